//+------------------------------------------------------------------+
//| Protocol.mqh: the mtml bridge wire protocol, version 1.           |
//| Specification and golden frames: docs/protocol.md. A frame is a   |
//| 4-byte big-endian body length, then the body: ASCII fields        |
//| separated by TAB, the first the message type, the second the      |
//| sender's sequence number.                                         |
//+------------------------------------------------------------------+
#property strict

#define MTML_PROTOCOL_VERSION 2
#define MTML_MAX_BODY 65536
#define MTML_TAB "\t"

//--- Appends a 4-byte big-endian length and the body to out[] starting at its end.
void MtmlAppendFrame(uchar &out[], const string body)
  {
   uchar text[];
   int len = StringToCharArray(body, text, 0, WHOLE_ARRAY, CP_UTF8) - 1; // drop the terminating 0
   if(len <= 0 || len > MTML_MAX_BODY)
      return;
   int start = ArraySize(out);
   ArrayResize(out, start + 4 + len);
   out[start + 0] = (uchar)((len >> 24) & 0xFF);
   out[start + 1] = (uchar)((len >> 16) & 0xFF);
   out[start + 2] = (uchar)((len >> 8) & 0xFF);
   out[start + 3] = (uchar)(len & 0xFF);
   ArrayCopy(out, text, start + 4, 0, len);
  }

//--- Takes one complete frame body off the front of buf[] (of used bytes). Returns 1 and sets
//--- body when a frame was taken, 0 when more bytes are needed, -1 on a bad length.
int MtmlTakeFrame(uchar &buf[], int &used, string &body)
  {
   if(used < 4)
      return 0;
   int len = (buf[0] << 24) | (buf[1] << 16) | (buf[2] << 8) | buf[3];
   if(len <= 0 || len > MTML_MAX_BODY)
      return -1;
   if(used < 4 + len)
      return 0;
   body = CharArrayToString(buf, 4, len, CP_UTF8);
   int rest = used - 4 - len;
   if(rest > 0)
      ArrayCopy(buf, buf, 0, 4 + len, rest);
   used = rest;
   return 1;
  }

//--- A price as the protocol writes it: the symbol's digits, no exponent.
string MtmlPrice(const double price, const int digits)
  {
   return DoubleToString(price, digits);
  }

//--- A volume written with the decimals of the symbol's volume step.
string MtmlVolume(const double volume, const double step)
  {
   int decimals = 0;
   double s = step;
   while(decimals < 8 && MathAbs(s - MathRound(s)) > 1e-9)
     {
      s *= 10.0;
      decimals++;
     }
   return DoubleToString(volume, decimals);
  }

//--- Builds a body from a type, a sequence number and the remaining fields.
string MtmlBody(const string type, const ulong seq, const string fields)
  {
   if(fields == "")
      return type + MTML_TAB + IntegerToString(seq);
   return type + MTML_TAB + IntegerToString(seq) + MTML_TAB + fields;
  }

//--- Splits a body into fields; returns the field count.
int MtmlSplit(const string body, string &fields[])
  {
   ushort tab = StringGetCharacter(MTML_TAB, 0);
   return StringSplit(body, tab, fields);
  }

string MtmlSide(const bool buy)
  {
   if(buy)
      return "BUY";
   return "SELL";
  }
//+------------------------------------------------------------------+
