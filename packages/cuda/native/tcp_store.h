// The rendezvous store of a multi-process run: a key-value store over TCP that rank 0 hosts at
// MASTER_ADDR:MASTER_PORT and every rank (rank 0 included) connects to, as torchrun's c10d TCPStore. Gloo
// rendezvouses through it (its Store interface; Debian's Gloo has no TCP store of its own), NCCL exchanges
// its unique id through it, and it is how ranks learn that one of them died: the server notices a rank's
// connection closing without a goodbye and publishes which one (key kFailedKey).
//
// The protocol is the least a store needs, each message length-prefixed: a request is
// [op u8][key length u32][key][value length u64][value], an answer [status u8][length u64][data]. Ops: HELLO
// (value: the rank), SET, GET (answered once the key exists), ADD (value: an int64 delta; answer: the new
// value), CHECK (answer: 1 when the key exists), BYE (a clean goodbye before closing).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace badam::dist {

/** Key the server sets, once, to "rank R ..." when a rank's connection closes without a goodbye. */
inline constexpr const char* kFailedKey = "badam/failed";

/** The store's server, on a thread of its own, serving until destroyed. */
class TcpStoreServer {
 public:
  /** Listens on `host`:`port` (all interfaces when `host` is empty); throws naming the address when it cannot. */
  TcpStoreServer(const std::string& host, int port);
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;
  int port() const { return port_; }

 private:
  struct Client;
  void serve();
  bool handle(Client& client);
  void answer_waiters(const std::string& key);
  void client_gone(Client& client);

  int listen_fd_ = -1;
  int wake_fd_[2] = {-1, -1};
  int port_ = 0;
  std::thread thread_;
  std::map<std::string, std::vector<char>> data_;
  std::vector<Client*> clients_;
  bool failed_published_ = false;
};

/** One connection to the store; every call is safe from any thread (one request at a time). */
class TcpStoreClient {
 public:
  /**
   * Connects to `host`:`port`, retrying until `timeout` (the server may not be up yet), and says HELLO as
   * `rank` (-1: an anonymous connection whose closing is no failure).
   */
  TcpStoreClient(const std::string& host, int port, int rank, std::chrono::milliseconds timeout);
  ~TcpStoreClient();
  TcpStoreClient(const TcpStoreClient&) = delete;
  TcpStoreClient& operator=(const TcpStoreClient&) = delete;

  void set(const std::string& key, const std::vector<char>& value);
  /** The value of `key`, waiting until it exists; throws after `timeout` (negative: no limit). */
  std::vector<char> get(const std::string& key, std::chrono::milliseconds timeout);
  int64_t add(const std::string& key, int64_t delta);
  bool check(const std::string& key);
  /** Says goodbye and closes: the server does not count this rank as failed. */
  void bye();
  /** Wakes a call blocked in another thread (it fails) and ends the connection; for shutting down. */
  void interrupt();
  const std::string& address() const { return address_; }

 private:
  std::vector<char> request(uint8_t op, const std::string& key, const std::vector<char>& value,
                            std::chrono::milliseconds timeout);
  std::atomic<int> fd_{-1};
  std::mutex mutex_;
  std::string address_;
};

/**
 * The local address this machine uses to reach `host` (a UDP socket "connected" there, then getsockname):
 * what Gloo's TCP transport binds so that the other ranks can reach it. "127.0.0.1" for a loopback host.
 */
std::string local_address_toward(const std::string& host, int port);

}  // namespace badam::dist
