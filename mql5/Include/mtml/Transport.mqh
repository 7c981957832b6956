//+------------------------------------------------------------------+
//| Transport.mqh: how the EA reaches the bridge. MQL5 sockets can    |
//| only connect, so the EA is the client: TCP everywhere (also under |
//| Wine), and on Windows a named pipe (\\.\pipe\NAME) opened as a    |
//| file, which needs no DLL either.                                  |
//+------------------------------------------------------------------+
#property strict

class CMtmlTransport
  {
public:
   virtual          ~CMtmlTransport(void) {}
   virtual bool      Open(void) = 0;
   virtual void      Close(void) = 0;
   virtual bool      IsOpen(void) = 0;
   //--- Sends all len bytes of data; false when the connection failed.
   virtual bool      Send(const uchar &data[], const int len) = 0;
   //--- Reads what is available, without waiting, appending to buf[] after used bytes.
   //--- Returns the number of bytes read, or -1 when the connection failed.
   virtual int       ReadAvailable(uchar &buf[], int &used) = 0;
   virtual string    Describe(void) = 0;
  };

class CMtmlTcpTransport : public CMtmlTransport
  {
private:
   string            m_host;
   uint              m_port;
   bool              m_tls;
   int               m_socket;
public:
   //--- tls: the bridge serves TLS on its terminal port (bridge.tls = true); the terminal
   //--- checks the bridge's certificate against the Windows certificate store.
                     CMtmlTcpTransport(const string host, const uint port, const bool tls)
     {
      m_host = host;
      m_port = port;
      m_tls = tls;
      m_socket = INVALID_HANDLE;
     }
                    ~CMtmlTcpTransport(void) { Close(); }

   virtual bool      Open(void)
     {
      Close();
      m_socket = SocketCreate();
      if(m_socket == INVALID_HANDLE)
         return false;
      if(!SocketConnect(m_socket, m_host, m_port, 3000))
        {
         // Error 4014 here means the address is not in Tools > Options > Expert Advisors >
         // "Allow WebRequest for listed URL".
         PrintFormat("mtml: cannot connect to %s:%d, error %d", m_host, m_port, GetLastError());
         Close();
         return false;
        }
      if(m_tls && !SocketTlsHandshake(m_socket, m_host))
        {
         // The bridge's certificate must be issued for InpHost and trusted by Windows.
         PrintFormat("mtml: TLS handshake with %s:%d failed, error %d", m_host, m_port, GetLastError());
         Close();
         return false;
        }
      return true;
     }

   virtual void      Close(void)
     {
      if(m_socket != INVALID_HANDLE)
        {
         SocketClose(m_socket);
         m_socket = INVALID_HANDLE;
        }
     }

   virtual bool      IsOpen(void)
     {
      return m_socket != INVALID_HANDLE && SocketIsConnected(m_socket);
     }

   virtual bool      Send(const uchar &data[], const int len)
     {
      if(m_socket == INVALID_HANDLE)
         return false;
      int sent = 0;
      while(sent < len)
        {
         uchar chunk[];
         ArrayCopy(chunk, data, 0, sent, len - sent);
         int n = m_tls ? SocketTlsSend(m_socket, chunk, len - sent) : SocketSend(m_socket, chunk, len - sent);
         if(n <= 0)
            return false;
         sent += n;
        }
      return true;
     }

   virtual int       ReadAvailable(uchar &buf[], int &used)
     {
      if(m_socket == INVALID_HANDLE)
         return -1;
      if(!SocketIsConnected(m_socket))
         return -1;
      if(m_tls)
        {
         //--- Decrypted bytes already received; 0 when none, -1 on failure.
         uchar secure[];
         int got = SocketTlsReadAvailable(m_socket, secure, 65536);
         if(got < 0)
            return -1;
         if(got == 0)
            return 0;
         ArrayResize(buf, used + got);
         ArrayCopy(buf, secure, used, 0, got);
         used += got;
         return got;
        }
      uint available = SocketIsReadable(m_socket);
      if(available == 0)
         return 0;
      uchar chunk[];
      int n = SocketRead(m_socket, chunk, available, 10);
      if(n <= 0)
         return -1;
      ArrayResize(buf, used + n);
      ArrayCopy(buf, chunk, used, 0, n);
      used += n;
      return n;
     }

   virtual string    Describe(void)
     {
      return StringFormat(m_tls ? "tls://%s:%d" : "tcp://%s:%d", m_host, m_port);
     }
  };

class CMtmlPipeTransport : public CMtmlTransport
  {
private:
   string            m_name;
   int               m_handle;
public:
                     CMtmlPipeTransport(const string name)
     {
      m_name = name;
      m_handle = INVALID_HANDLE;
     }
                    ~CMtmlPipeTransport(void) { Close(); }

   virtual bool      Open(void)
     {
      Close();
      m_handle = FileOpen("\\\\.\\pipe\\" + m_name, FILE_READ | FILE_WRITE | FILE_BIN | FILE_SHARE_READ | FILE_SHARE_WRITE);
      if(m_handle == INVALID_HANDLE)
        {
         PrintFormat("mtml: cannot open pipe %s, error %d", m_name, GetLastError());
         return false;
        }
      return true;
     }

   virtual void      Close(void)
     {
      if(m_handle != INVALID_HANDLE)
        {
         FileClose(m_handle);
         m_handle = INVALID_HANDLE;
        }
     }

   virtual bool      IsOpen(void)
     {
      return m_handle != INVALID_HANDLE;
     }

   virtual bool      Send(const uchar &data[], const int len)
     {
      if(m_handle == INVALID_HANDLE)
         return false;
      uint written = FileWriteArray(m_handle, data, 0, len);
      FileFlush(m_handle);
      return written == (uint)len;
     }

   virtual int       ReadAvailable(uchar &buf[], int &used)
     {
      if(m_handle == INVALID_HANDLE)
         return -1;
      // On a pipe, FileSize reports the bytes waiting to be read.
      ulong available = FileSize(m_handle);
      if(available == 0)
         return 0;
      uchar chunk[];
      uint n = FileReadArray(m_handle, chunk, 0, (int)available);
      if(n == 0)
         return -1;
      ArrayResize(buf, used + (int)n);
      ArrayCopy(buf, chunk, used, 0, (int)n);
      used += (int)n;
      return (int)n;
     }

   virtual string    Describe(void)
     {
      return "pipe://" + m_name;
     }
  };
//+------------------------------------------------------------------+
