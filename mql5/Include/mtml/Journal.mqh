//+------------------------------------------------------------------+
//| Journal.mqh: client order ids this terminal has executed, kept in |
//| a file in the common data folder, so that after an EA or terminal |
//| restart a repeated id is answered with the original ACK and never |
//| executed twice. Also remembers each id's chain id for its FILLs.  |
//+------------------------------------------------------------------+
#property strict

class CMtmlJournal
  {
private:
   string            m_file;
   string            m_ids[];
   string            m_chains[];
   ulong             m_tickets[];
   int               m_count;

   int               Find(const string id)
     {
      for(int i = m_count - 1; i >= 0; i--)
         if(m_ids[i] == id)
            return i;
      return -1;
     }

   void              Remember(const string id, const string chain, const ulong ticket)
     {
      int i = Find(id);
      if(i < 0)
        {
         i = m_count;
         m_count++;
         ArrayResize(m_ids, m_count, 256);
         ArrayResize(m_chains, m_count, 256);
         ArrayResize(m_tickets, m_count, 256);
        }
      m_ids[i] = id;
      m_chains[i] = chain;
      m_tickets[i] = ticket;
     }

public:
                     CMtmlJournal(void) { m_count = 0; }

   //--- Loads the journal of an account; lines are "id<TAB>chain<TAB>ticket".
   void              Load(const long login)
     {
      m_file = StringFormat("mtml\\journal_%I64d.txt", login);
      m_count = 0;
      int h = FileOpen(m_file, FILE_READ | FILE_TXT | FILE_COMMON | FILE_ANSI);
      if(h == INVALID_HANDLE)
         return;
      while(!FileIsEnding(h))
        {
         string line = FileReadString(h);
         string parts[];
         if(StringSplit(line, StringGetCharacter("\t", 0), parts) == 3)
            Remember(parts[0], parts[1], StringToInteger(parts[2]));
        }
      FileClose(h);
     }

   bool              Contains(const string id, ulong &ticket)
     {
      int i = Find(id);
      if(i < 0)
         return false;
      ticket = m_tickets[i];
      return true;
     }

   string            ChainOf(const string id)
     {
      int i = Find(id);
      if(i < 0)
         return "";
      return m_chains[i];
     }

   //--- Records an id before its order is sent (ticket 0), and again with the ticket after.
   void              Record(const string id, const string chain, const ulong ticket)
     {
      Remember(id, chain, ticket);
      int h = FileOpen(m_file, FILE_READ | FILE_WRITE | FILE_TXT | FILE_COMMON | FILE_ANSI);
      if(h == INVALID_HANDLE)
        {
         PrintFormat("mtml: cannot write journal %s, error %d", m_file, GetLastError());
         return;
        }
      FileSeek(h, 0, SEEK_END);
      FileWriteString(h, id + "\t" + chain + "\t" + IntegerToString(ticket) + "\r\n");
      FileClose(h);
     }
  };
//+------------------------------------------------------------------+
