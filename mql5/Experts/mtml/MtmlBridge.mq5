//+------------------------------------------------------------------+
//| MtmlBridge.mq5: connects this terminal to an mtml bridge.         |
//|                                                                   |
//| Streams the ticks of every subscribed symbol (not just the chart  |
//| symbol) and closed M1 bars, executes the orders the bridge sends  |
//| (market, limit, stop, modify, close, cancel) exactly once per     |
//| client order id, and reports acks, rejects and fills. Needs no    |
//| DLL. Protocol: docs/protocol.md (version 1).                      |
//+------------------------------------------------------------------+
#property copyright "mtml"
#property version   "1.00"
#property description "mtml bridge client: ticks out, orders in, fills back."
#property strict

#include <mtml/Protocol.mqh>
#include <mtml/Transport.mqh>
#include <mtml/Journal.mqh>

enum ENUM_MTML_TRANSPORT
  {
   MTML_TCP = 0,        // TCP (every platform, Wine included)
   MTML_PIPE = 1        // Named pipe (Windows)
  };

input ENUM_MTML_TRANSPORT InpTransport = MTML_TCP;       // Transport
input string   InpHost = "127.0.0.1";                     // Bridge host (add it to the allowed URL list)
input int      InpPort = 5555;                            // Bridge port
input string   InpPipeName = "mtml";                      // Pipe name (\\.\pipe\NAME)
input string   InpToken = "";                             // Auth token (bridge.token)
input bool     InpTls = false;                            // TLS to the bridge (bridge.tls = true; its certificate trusted by Windows)
input string   InpSymbols = "";                           // Symbols to stream, comma separated (empty: chart symbol)
input long     InpMagic = 7307;                           // Magic number of mtml orders
input double   InpMaxLots = 1.0;                          // Fail-safe: largest order, lots
input int      InpMaxOpenOrders = 20;                     // Fail-safe: most open positions plus pending orders
input int      InpMaxOrderAgeMs = 0;                      // Fail-safe: refuse a market order decided longer ago than this, market time (ms; 0: off)
input int      InpReconnectMinMs = 500;                   // Reconnect backoff, first wait (ms)
input int      InpReconnectMaxMs = 30000;                 // Reconnect backoff, longest wait (ms)
input int      InpHeartbeatSeconds = 5;                   // Heartbeat interval (s)
input int      InpHistoryHours = 24;                      // Deals reported in the snapshot (hours)
input int      InpSlippagePoints = 10;                    // Market order deviation (points)

enum ENUM_MTML_STATE
  {
   MTML_DISCONNECTED = 0,
   MTML_AWAIT_WELCOME = 1,
   MTML_AWAIT_START = 2,
   MTML_STREAMING = 3
  };

#define MTML_RING 4096

CMtmlTransport  *g_link = NULL;
CMtmlJournal     g_journal;
ENUM_MTML_STATE  g_state = MTML_DISCONNECTED;
ulong            g_seq = 0;
uchar            g_rx[];
int              g_rx_used = 0;
ulong            g_next_attempt_ms = 0;
int              g_backoff_ms = 0;
ulong            g_last_heard_ms = 0;
ulong            g_last_sent_ms = 0;
string           g_symbols[];
long             g_cursor_time[];
int              g_cursor_count[];
datetime         g_last_bar[];
string           g_ring_bodies[MTML_RING];
ulong            g_ring_seqs[MTML_RING];

//+------------------------------------------------------------------+
int OnInit(void)
  {
   if(InpTransport == MTML_PIPE)
      g_link = new CMtmlPipeTransport(InpPipeName);
   else
      g_link = new CMtmlTcpTransport(InpHost, (uint)InpPort, InpTls);
   string list = InpSymbols;
   if(list == "")
      list = _Symbol;
   string parts[];
   int n = StringSplit(list, StringGetCharacter(",", 0), parts);
   ArrayResize(g_symbols, 0);
   for(int i = 0; i < n; i++)
     {
      string symbol = parts[i];
      StringTrimLeft(symbol);
      StringTrimRight(symbol);
      if(symbol == "")
         continue;
      if(!SymbolSelect(symbol, true))
        {
         PrintFormat("mtml: symbol %s is not available at this broker", symbol);
         return INIT_PARAMETERS_INCORRECT;
        }
      int k = ArraySize(g_symbols);
      ArrayResize(g_symbols, k + 1);
      g_symbols[k] = symbol;
     }
   ArrayResize(g_cursor_time, ArraySize(g_symbols));
   ArrayResize(g_cursor_count, ArraySize(g_symbols));
   ArrayResize(g_last_bar, ArraySize(g_symbols));
   g_journal.Load(AccountInfoInteger(ACCOUNT_LOGIN));
   g_backoff_ms = InpReconnectMinMs;
   EventSetMillisecondTimer(10);
   PrintFormat("mtml: %d symbols via %s", ArraySize(g_symbols), g_link.Describe());
   return INIT_SUCCEEDED;
  }

//+------------------------------------------------------------------+
void OnDeinit(const int reason)
  {
   EventKillTimer();
   if(g_link != NULL)
     {
      g_link.Close();
      delete g_link;
      g_link = NULL;
     }
   g_state = MTML_DISCONNECTED;
  }

//+------------------------------------------------------------------+
ulong NowMs(void)
  {
   return GetTickCount64();
  }

//--- Sends one message; remembers it for RESEND.
bool SendMessage(const string type, const string fields)
  {
   g_seq++;
   string body = MtmlBody(type, g_seq, fields);
   int slot = (int)(g_seq % MTML_RING);
   g_ring_bodies[slot] = body;
   g_ring_seqs[slot] = g_seq;
   uchar frame[];
   MtmlAppendFrame(frame, body);
   if(!g_link.Send(frame, ArraySize(frame)))
     {
      Disconnect("send failed");
      return false;
     }
   g_last_sent_ms = NowMs();
   return true;
  }

//+------------------------------------------------------------------+
void Disconnect(const string why)
  {
   if(g_state != MTML_DISCONNECTED)
      PrintFormat("mtml: disconnected (%s); reconnecting in %d ms", why, g_backoff_ms);
   g_link.Close();
   g_state = MTML_DISCONNECTED;
   g_rx_used = 0;
   g_next_attempt_ms = NowMs() + (ulong)g_backoff_ms;
   g_backoff_ms = MathMin(g_backoff_ms * 2, InpReconnectMaxMs);
  }

//+------------------------------------------------------------------+
void OnTimer(void)
  {
   if(g_state == MTML_DISCONNECTED)
     {
      if(NowMs() < g_next_attempt_ms)
         return;
      Connect();
      return;
     }
   if(g_link.ReadAvailable(g_rx, g_rx_used) < 0)
     {
      Disconnect("connection closed");
      return;
     }
   string body;
   int taken;
   while((taken = MtmlTakeFrame(g_rx, g_rx_used, body)) == 1)
     {
      g_last_heard_ms = NowMs();
      Dispatch(body);
      if(g_state == MTML_DISCONNECTED)
         return;
     }
   if(taken < 0)
     {
      Disconnect("bad frame from the bridge");
      return;
     }
   ulong now = NowMs();
   if(now - g_last_heard_ms > (ulong)InpHeartbeatSeconds * 3000)
     {
      Disconnect("bridge silent");
      return;
     }
   if(g_state == MTML_STREAMING)
     {
      for(int i = 0; i < ArraySize(g_symbols); i++)
        {
         StreamTicks(i);
         StreamBar(i);
        }
     }
   if(now - g_last_sent_ms > (ulong)InpHeartbeatSeconds * 1000)
     {
      SendMessage("HEARTBEAT", IntegerToString(TimeCurrent()) + "000");
      if(g_state == MTML_STREAMING)
         SendAccount();
     }
  }

//+------------------------------------------------------------------+
void Connect(void)
  {
   if(!g_link.Open())
     {
      Disconnect("connect failed");
      return;
     }
   g_seq = 0;
   g_rx_used = 0;
   g_last_heard_ms = NowMs();
   g_state = MTML_AWAIT_WELCOME;
   string mode = "DEMO";
   long trade_mode = AccountInfoInteger(ACCOUNT_TRADE_MODE);
   if(trade_mode == ACCOUNT_TRADE_MODE_REAL)
      mode = "REAL";
   if(trade_mode == ACCOUNT_TRADE_MODE_CONTEST)
      mode = "CONTEST";
   string margin = "NETTING";
   if(AccountInfoInteger(ACCOUNT_MARGIN_MODE) == ACCOUNT_MARGIN_MODE_RETAIL_HEDGING)
      margin = "HEDGING";
   string fields = IntegerToString(MTML_PROTOCOL_VERSION) + MTML_TAB + InpToken + MTML_TAB +
                   TerminalInfoString(TERMINAL_NAME) + MTML_TAB +
                   IntegerToString(TerminalInfoInteger(TERMINAL_BUILD)) + MTML_TAB +
                   IntegerToString(AccountInfoInteger(ACCOUNT_LOGIN)) + MTML_TAB +
                   AccountInfoString(ACCOUNT_SERVER) + MTML_TAB +
                   AccountInfoString(ACCOUNT_CURRENCY) + MTML_TAB +
                   IntegerToString(AccountInfoInteger(ACCOUNT_LEVERAGE)) + MTML_TAB + mode + MTML_TAB + margin;
   SendMessage("HELLO", fields);
  }

//+------------------------------------------------------------------+
void Dispatch(const string body)
  {
   string f[];
   int n = MtmlSplit(body, f);
   if(n < 2)
     {
      Disconnect("malformed message");
      return;
     }
   string type = f[0];
   if(type == "HEARTBEAT")
      return;
   if(g_state == MTML_AWAIT_WELCOME)
     {
      if(type == "WELCOME")
        {
         PrintFormat("mtml: connected, session %s", f[3]);
         g_backoff_ms = InpReconnectMinMs;
         SendSymbols();
         SendBooks();
         g_state = MTML_AWAIT_START;
         for(int i = 0; i < ArraySize(g_symbols); i++)
            StartFromNow(i);
         return;
        }
      if(type == "REFUSED")
        {
         PrintFormat("mtml: the bridge refused this terminal: %s (%s)", f[3], f[2]);
         g_backoff_ms = InpReconnectMaxMs;
         Disconnect("refused");
         return;
        }
     }
   if(g_state == MTML_AWAIT_START)
     {
      if(type == "RESUME" && n == 5)
        {
         int i = SymbolIndex(f[2]);
         if(i >= 0)
           {
            g_cursor_time[i] = StringToInteger(f[3]);
            g_cursor_count[i] = (int)StringToInteger(f[4]);
           }
         return;
        }
      if(type == "START")
        {
         g_state = MTML_STREAMING;
         return;
        }
     }
   if(g_state == MTML_STREAMING)
     {
      if(type == "ORDER" && n == 12)
        {
         ExecuteOrder(f[2], f[3], f[4], f[5] == "BUY", f[6], StringToDouble(f[7]), StringToDouble(f[8]), StringToDouble(f[9]), StringToDouble(f[10]), StringToInteger(f[11]));
         return;
        }
      if(type == "MODIFY" && n == 7)
        {
         ModifyPosition(f[2], f[3], StringToInteger(f[4]), StringToDouble(f[5]), StringToDouble(f[6]));
         return;
        }
      if(type == "CLOSE" && n == 6)
        {
         ClosePosition(f[2], f[3], StringToInteger(f[4]), StringToDouble(f[5]));
         return;
        }
      if(type == "CANCEL" && n == 5)
        {
         CancelOrder(f[2], f[3], StringToInteger(f[4]));
         return;
        }
      if(type == "RESEND" && n == 4)
        {
         Resend(StringToInteger(f[2]), StringToInteger(f[3]));
         return;
        }
      if(type == "SYNC" && n == 2)
        {
         SendBooks();
         return;
        }
     }
   Disconnect("unexpected " + type);
  }

//+------------------------------------------------------------------+
int SymbolIndex(const string symbol)
  {
   for(int i = 0; i < ArraySize(g_symbols); i++)
      if(g_symbols[i] == symbol)
         return i;
   return -1;
  }

//--- Symbols without a RESUME stream from the next tick on: the cursor is the newest tick now.
void StartFromNow(const int i)
  {
   MqlTick last;
   g_cursor_time[i] = 0;
   g_cursor_count[i] = 0;
   if(!SymbolInfoTick(g_symbols[i], last))
      return;
   MqlTick same[];
   int got = CopyTicks(g_symbols[i], same, COPY_TICKS_INFO, (ulong)last.time_msc, 1000);
   g_cursor_time[i] = last.time_msc;
   g_cursor_count[i] = MathMax(got, 0);
   g_last_bar[i] = iTime(g_symbols[i], PERIOD_M1, 0);
  }

//--- The account's money, for the bridge's margin check.
void SendAccount(void)
  {
   string fields = DoubleToString(AccountInfoDouble(ACCOUNT_BALANCE), 2) + MTML_TAB +
                   DoubleToString(AccountInfoDouble(ACCOUNT_EQUITY), 2) + MTML_TAB +
                   DoubleToString(AccountInfoDouble(ACCOUNT_MARGIN), 2) + MTML_TAB +
                   DoubleToString(AccountInfoDouble(ACCOUNT_MARGIN_FREE), 2);
   SendMessage("ACCOUNT", fields);
  }

//--- The capabilities of every subscribed symbol, once per connection.
void SendSymbols(void)
  {
   for(int i = 0; i < ArraySize(g_symbols); i++)
     {
      string s = g_symbols[i];
      double step = SymbolInfoDouble(s, SYMBOL_VOLUME_STEP);
      int digits = (int)SymbolInfoInteger(s, SYMBOL_DIGITS);
      string fields = s + MTML_TAB + IntegerToString(digits) + MTML_TAB +
                      MtmlPrice(SymbolInfoDouble(s, SYMBOL_POINT), digits) + MTML_TAB +
                      MtmlVolume(SymbolInfoDouble(s, SYMBOL_VOLUME_MIN), step) + MTML_TAB +
                      MtmlVolume(step, step) + MTML_TAB +
                      MtmlVolume(SymbolInfoDouble(s, SYMBOL_VOLUME_MAX), step) + MTML_TAB +
                      IntegerToString(SymbolInfoInteger(s, SYMBOL_TRADE_STOPS_LEVEL)) + MTML_TAB +
                      IntegerToString(SymbolInfoInteger(s, SYMBOL_TRADE_FREEZE_LEVEL)) + MTML_TAB +
                      IntegerToString(SymbolInfoInteger(s, SYMBOL_FILLING_MODE)) + MTML_TAB +
                      IntegerToString(SymbolInfoInteger(s, SYMBOL_TRADE_MODE));
      if(!SendMessage("SYMBOL", fields))
         return;
     }
  }

//--- The books: open positions, pending orders, the last 24 hours of deals and the account's money,
//--- then SNAPSHOT_END. Sent on connecting and again in answer to every SYNC.
void SendBooks(void)
  {
   for(int p = PositionsTotal() - 1; p >= 0; p--)
     {
      ulong ticket = PositionGetTicket(p);
      if(ticket == 0)
         continue;
      string s = PositionGetString(POSITION_SYMBOL);
      if(SymbolIndex(s) < 0)
         continue;
      int digits = (int)SymbolInfoInteger(s, SYMBOL_DIGITS);
      bool buy = PositionGetInteger(POSITION_TYPE) == POSITION_TYPE_BUY;
      string fields = IntegerToString(ticket) + MTML_TAB + s + MTML_TAB + MtmlSide(buy) + MTML_TAB +
                      MtmlVolume(PositionGetDouble(POSITION_VOLUME), SymbolInfoDouble(s, SYMBOL_VOLUME_STEP)) + MTML_TAB +
                      MtmlPrice(PositionGetDouble(POSITION_PRICE_OPEN), digits) + MTML_TAB +
                      PositionGetString(POSITION_COMMENT);
      if(!SendMessage("POSITION", fields))
         return;
     }
   for(int o = OrdersTotal() - 1; o >= 0; o--)
     {
      ulong ticket = OrderGetTicket(o);
      if(ticket == 0)
         continue;
      string s = OrderGetString(ORDER_SYMBOL);
      if(SymbolIndex(s) < 0)
         continue;
      long type = OrderGetInteger(ORDER_TYPE);
      bool buy = type == ORDER_TYPE_BUY_LIMIT || type == ORDER_TYPE_BUY_STOP;
      string kind = "STOP";
      if(type == ORDER_TYPE_BUY_LIMIT || type == ORDER_TYPE_SELL_LIMIT)
         kind = "LIMIT";
      int digits = (int)SymbolInfoInteger(s, SYMBOL_DIGITS);
      string fields = IntegerToString(ticket) + MTML_TAB + s + MTML_TAB + MtmlSide(buy) + MTML_TAB + kind + MTML_TAB +
                      MtmlVolume(OrderGetDouble(ORDER_VOLUME_CURRENT), SymbolInfoDouble(s, SYMBOL_VOLUME_STEP)) + MTML_TAB +
                      MtmlPrice(OrderGetDouble(ORDER_PRICE_OPEN), digits) + MTML_TAB +
                      OrderGetString(ORDER_COMMENT);
      if(!SendMessage("PENDING", fields))
         return;
     }
   datetime to = TimeCurrent() + 60;
   if(HistorySelect(to - InpHistoryHours * 3600, to))
     {
      int deals = HistoryDealsTotal();
      for(int d = 0; d < deals; d++)
        {
         ulong deal = HistoryDealGetTicket(d);
         long deal_type = HistoryDealGetInteger(deal, DEAL_TYPE);
         if(deal_type != DEAL_TYPE_BUY && deal_type != DEAL_TYPE_SELL)
            continue;
         string s = HistoryDealGetString(deal, DEAL_SYMBOL);
         if(SymbolIndex(s) < 0)
            continue;
         ulong order = HistoryDealGetInteger(deal, DEAL_ORDER);
         int digits = (int)SymbolInfoInteger(s, SYMBOL_DIGITS);
         string fields = IntegerToString(deal) + MTML_TAB + IntegerToString(order) + MTML_TAB + s + MTML_TAB +
                         MtmlSide(deal_type == DEAL_TYPE_BUY) + MTML_TAB +
                         MtmlVolume(HistoryDealGetDouble(deal, DEAL_VOLUME), SymbolInfoDouble(s, SYMBOL_VOLUME_STEP)) + MTML_TAB +
                         MtmlPrice(HistoryDealGetDouble(deal, DEAL_PRICE), digits) + MTML_TAB +
                         IntegerToString(HistoryDealGetInteger(deal, DEAL_TIME_MSC)) + MTML_TAB +
                         HistoryOrderGetString(order, ORDER_COMMENT);
         if(!SendMessage("DEAL", fields))
            return;
        }
     }
   SendAccount();
   SendMessage("SNAPSHOT_END", "");
  }

//--- Sends every tick of the symbol after its cursor. Several ticks can share a millisecond, so
//--- the cursor is a time plus how many ticks of that millisecond were sent, never "time + 1".
void StreamTicks(const int i)
  {
   if(g_cursor_time[i] <= 0)
     {
      StartFromNow(i);
      return;
     }
   MqlTick ticks[];
   int got = CopyTicks(g_symbols[i], ticks, COPY_TICKS_INFO, (ulong)g_cursor_time[i], 1000);
   if(got <= 0)
      return;
   int digits = (int)SymbolInfoInteger(g_symbols[i], SYMBOL_DIGITS);
   int skip = 0;
   for(int k = 0; k < got; k++)
     {
      if(ticks[k].time_msc == g_cursor_time[i] && skip < g_cursor_count[i])
        {
         skip++;
         continue;
        }
      string fields = g_symbols[i] + MTML_TAB + IntegerToString(ticks[k].time_msc) + MTML_TAB +
                      MtmlPrice(ticks[k].bid, digits) + MTML_TAB + MtmlPrice(ticks[k].ask, digits);
      if(!SendMessage("TICK", fields))
         return;
      if(ticks[k].time_msc == g_cursor_time[i])
         g_cursor_count[i]++;
      else
        {
         g_cursor_time[i] = ticks[k].time_msc;
         g_cursor_count[i] = 1;
        }
     }
  }

//--- Sends the M1 bar that just closed.
void StreamBar(const int i)
  {
   datetime open = iTime(g_symbols[i], PERIOD_M1, 0);
   if(open == 0 || open == g_last_bar[i])
      return;
   g_last_bar[i] = open;
   MqlRates rates[];
   if(CopyRates(g_symbols[i], PERIOD_M1, 1, 1, rates) != 1)
      return;
   int digits = (int)SymbolInfoInteger(g_symbols[i], SYMBOL_DIGITS);
   string fields = g_symbols[i] + MTML_TAB + "M1" + MTML_TAB + IntegerToString(rates[0].time) + "000" + MTML_TAB +
                   MtmlPrice(rates[0].open, digits) + MTML_TAB + MtmlPrice(rates[0].high, digits) + MTML_TAB +
                   MtmlPrice(rates[0].low, digits) + MTML_TAB + MtmlPrice(rates[0].close, digits) + MTML_TAB +
                   IntegerToString(rates[0].tick_volume);
   SendMessage("BAR", fields);
  }

//+------------------------------------------------------------------+
void Ack(const string id, const ulong ticket)
  {
   SendMessage("ACK", id + MTML_TAB + IntegerToString(ticket));
  }

void Reject(const string id, const uint retcode, const string reason)
  {
   SendMessage("REJECT", id + MTML_TAB + IntegerToString(retcode) + MTML_TAB + reason);
  }

//--- The first filling mode the symbol allows: FOK, then IOC, then RETURN. Picking from the
//--- symbol's own modes is what avoids retcode 10030 "Unsupported filling mode".
ENUM_ORDER_TYPE_FILLING FillingFor(const string symbol)
  {
   long modes = SymbolInfoInteger(symbol, SYMBOL_FILLING_MODE);
   if((modes & SYMBOL_FILLING_FOK) == SYMBOL_FILLING_FOK)
      return ORDER_FILLING_FOK;
   if((modes & SYMBOL_FILLING_IOC) == SYMBOL_FILLING_IOC)
      return ORDER_FILLING_IOC;
   return ORDER_FILLING_RETURN;
  }

//--- The ticket of an order, position or recent deal whose comment is the client order id, or 0.
ulong FindTicketByComment(const string id)
  {
   for(int o = OrdersTotal() - 1; o >= 0; o--)
     {
      ulong ticket = OrderGetTicket(o);
      if(ticket != 0 && OrderGetString(ORDER_COMMENT) == id)
         return ticket;
     }
   for(int p = PositionsTotal() - 1; p >= 0; p--)
     {
      ulong ticket = PositionGetTicket(p);
      if(ticket != 0 && PositionGetString(POSITION_COMMENT) == id)
         return ticket;
     }
   datetime to = TimeCurrent() + 60;
   if(HistorySelect(to - InpHistoryHours * 3600, to))
     {
      for(int h = HistoryOrdersTotal() - 1; h >= 0; h--)
        {
         ulong ticket = HistoryOrderGetTicket(h);
         if(ticket != 0 && HistoryOrderGetString(ticket, ORDER_COMMENT) == id)
            return ticket;
        }
     }
   return 0;
  }

//--- True (and answered) when the id was seen before: an id is executed at most once. An id
//--- journaled without a ticket was interrupted (EA or terminal restart) between journal and
//--- trade server: the terminal's own records tell whether it got through.
bool AlreadyExecuted(const string id)
  {
   ulong ticket = 0;
   if(!g_journal.Contains(id, ticket))
      return false;
   if(ticket == 0)
      ticket = FindTicketByComment(id);
   if(ticket != 0)
     {
      Ack(id, ticket);
      return true;
     }
   Reject(id, TRADE_RETCODE_REJECT, "interrupted by a restart before reaching the trade server; not sent again");
   return true;
  }

bool WithinFailSafes(const string id, const string symbol, const string kind, const double volume, const long decided_msc)
  {
   MqlTick last;
   if(InpMaxOrderAgeMs > 0 && kind == "MARKET" && decided_msc > 0 && SymbolInfoTick(symbol, last) && (long)last.time_msc - decided_msc > InpMaxOrderAgeMs)
     {
      Reject(id, TRADE_RETCODE_PRICE_CHANGED, StringFormat("decided %I64d ms ago in market time, more than the EA's fail-safe of %d ms", (long)last.time_msc - decided_msc, InpMaxOrderAgeMs));
      return false;
     }
   if(volume > InpMaxLots + 1e-9)
     {
      Reject(id, TRADE_RETCODE_LIMIT_VOLUME, StringFormat("volume %.2f exceeds the EA's fail-safe of %.2f lots", volume, InpMaxLots));
      return false;
     }
   if(PositionsTotal() + OrdersTotal() >= InpMaxOpenOrders)
     {
      Reject(id, TRADE_RETCODE_LIMIT_ORDERS, StringFormat("the EA's fail-safe allows %d open positions and orders", InpMaxOpenOrders));
      return false;
     }
   return true;
  }

//--- Sends a request and answers the bridge: ACK with the ticket, or REJECT with the retcode.
void Submit(const string id, const string chain, MqlTradeRequest &request)
  {
   g_journal.Record(id, chain, 0);
   MqlTradeResult result;
   ZeroMemory(result);
   bool sent = OrderSend(request, result);
   if(sent && (result.retcode == TRADE_RETCODE_DONE || result.retcode == TRADE_RETCODE_PLACED || result.retcode == TRADE_RETCODE_DONE_PARTIAL))
     {
      ulong ticket = result.order;
      if(ticket == 0)
         ticket = request.position;
      g_journal.Record(id, chain, ticket);
      Ack(id, ticket);
      return;
     }
   Reject(id, result.retcode, result.comment);
  }

//+------------------------------------------------------------------+
void ExecuteOrder(const string id, const string chain, const string symbol, const bool buy, const string kind,
                  const double volume, const double price, const double sl, const double tp, const long decided_msc)
  {
   if(AlreadyExecuted(id) || !WithinFailSafes(id, symbol, kind, volume, decided_msc))
      return;
   MqlTradeRequest request;
   ZeroMemory(request);
   request.symbol = symbol;
   request.volume = volume;
   request.magic = (ulong)InpMagic;
   request.comment = id;
   request.sl = sl;
   request.tp = tp;
   request.deviation = (ulong)InpSlippagePoints;
   if(kind == "MARKET")
     {
      request.action = TRADE_ACTION_DEAL;
      request.type_filling = FillingFor(symbol);
      if(buy)
        {
         request.type = ORDER_TYPE_BUY;
         request.price = SymbolInfoDouble(symbol, SYMBOL_ASK);
        }
      else
        {
         request.type = ORDER_TYPE_SELL;
         request.price = SymbolInfoDouble(symbol, SYMBOL_BID);
        }
     }
   else
     {
      request.action = TRADE_ACTION_PENDING;
      request.type_filling = ORDER_FILLING_RETURN;
      request.price = price;
      if(kind == "LIMIT")
        {
         if(buy)
            request.type = ORDER_TYPE_BUY_LIMIT;
         else
            request.type = ORDER_TYPE_SELL_LIMIT;
        }
      else
        {
         if(buy)
            request.type = ORDER_TYPE_BUY_STOP;
         else
            request.type = ORDER_TYPE_SELL_STOP;
        }
     }
   Submit(id, chain, request);
  }

void ModifyPosition(const string id, const string chain, const ulong ticket, const double sl, const double tp)
  {
   if(AlreadyExecuted(id))
      return;
   if(!PositionSelectByTicket(ticket))
     {
      Reject(id, TRADE_RETCODE_POSITION_CLOSED, StringFormat("position %I64u is closed", ticket));
      return;
     }
   MqlTradeRequest request;
   ZeroMemory(request);
   request.action = TRADE_ACTION_SLTP;
   request.position = ticket;
   request.symbol = PositionGetString(POSITION_SYMBOL);
   request.sl = sl;
   request.tp = tp;
   request.magic = (ulong)InpMagic;
   Submit(id, chain, request);
  }

void ClosePosition(const string id, const string chain, const ulong ticket, const double volume)
  {
   if(AlreadyExecuted(id))
      return;
   if(!PositionSelectByTicket(ticket))
     {
      Reject(id, TRADE_RETCODE_POSITION_CLOSED, StringFormat("position %I64u is closed", ticket));
      return;
     }
   string symbol = PositionGetString(POSITION_SYMBOL);
   bool long_position = PositionGetInteger(POSITION_TYPE) == POSITION_TYPE_BUY;
   MqlTradeRequest request;
   ZeroMemory(request);
   request.action = TRADE_ACTION_DEAL;
   request.position = ticket;
   request.symbol = symbol;
   request.volume = MathMin(volume, PositionGetDouble(POSITION_VOLUME));
   request.magic = (ulong)InpMagic;
   request.comment = id;
   request.deviation = (ulong)InpSlippagePoints;
   request.type_filling = FillingFor(symbol);
   if(long_position)
     {
      request.type = ORDER_TYPE_SELL;
      request.price = SymbolInfoDouble(symbol, SYMBOL_BID);
     }
   else
     {
      request.type = ORDER_TYPE_BUY;
      request.price = SymbolInfoDouble(symbol, SYMBOL_ASK);
     }
   Submit(id, chain, request);
  }

void CancelOrder(const string id, const string chain, const ulong ticket)
  {
   if(AlreadyExecuted(id))
      return;
   MqlTradeRequest request;
   ZeroMemory(request);
   request.action = TRADE_ACTION_REMOVE;
   request.order = ticket;
   Submit(id, chain, request);
  }

//--- Sends again the frames the bridge missed, with their original sequence numbers.
void Resend(const ulong from, const ulong to)
  {
   for(ulong seq = from; seq <= to && seq <= g_seq; seq++)
     {
      int slot = (int)(seq % MTML_RING);
      if(g_ring_seqs[slot] != seq)
         continue;
      uchar frame[];
      MtmlAppendFrame(frame, g_ring_bodies[slot]);
      if(!g_link.Send(frame, ArraySize(frame)))
        {
         Disconnect("send failed");
         return;
        }
     }
  }

//--- Fills come from the trade server's deals, for orders this EA placed for the bridge.
void OnTradeTransaction(const MqlTradeTransaction &trans, const MqlTradeRequest &request, const MqlTradeResult &result)
  {
   if(trans.type != TRADE_TRANSACTION_DEAL_ADD || g_state != MTML_STREAMING)
      return;
   if(!HistoryDealSelect(trans.deal))
      return;
   ulong order = HistoryDealGetInteger(trans.deal, DEAL_ORDER);
   string id = "";
   if(HistoryOrderSelect(order))
      id = HistoryOrderGetString(order, ORDER_COMMENT);
   string chain = g_journal.ChainOf(id);
   if(chain == "")
      return; // not an mtml order
   string symbol = HistoryDealGetString(trans.deal, DEAL_SYMBOL);
   int digits = (int)SymbolInfoInteger(symbol, SYMBOL_DIGITS);
   long deal_type = HistoryDealGetInteger(trans.deal, DEAL_TYPE);
   string fields = id + MTML_TAB + chain + MTML_TAB + IntegerToString(order) + MTML_TAB + IntegerToString(trans.deal) + MTML_TAB +
                   symbol + MTML_TAB + MtmlSide(deal_type == DEAL_TYPE_BUY) + MTML_TAB +
                   MtmlVolume(HistoryDealGetDouble(trans.deal, DEAL_VOLUME), SymbolInfoDouble(symbol, SYMBOL_VOLUME_STEP)) + MTML_TAB +
                   MtmlPrice(HistoryDealGetDouble(trans.deal, DEAL_PRICE), digits) + MTML_TAB +
                   IntegerToString(HistoryDealGetInteger(trans.deal, DEAL_TIME_MSC));
   SendMessage("FILL", fields);
  }
//+------------------------------------------------------------------+
