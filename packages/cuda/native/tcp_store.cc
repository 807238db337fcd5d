#include "tcp_store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace badam::dist {
namespace {

enum Op : uint8_t { kHello = 1, kSet = 2, kGet = 3, kAdd = 4, kCheck = 5, kBye = 6 };

std::string errno_text() { return std::strerror(errno); }

/** Writes all of `data`; false when the peer is gone. */
bool send_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

/** Reads exactly `n` bytes, waiting at most until `deadline` (none when `forever`); throws on failure. */
void recv_all(int fd, void* data, size_t n, std::chrono::steady_clock::time_point deadline, bool forever,
              const std::string& what) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    int wait_ms = -1;
    if (!forever) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) throw std::runtime_error(what + ": no answer from the store in time");
      wait_ms = static_cast<int>(left > 1000000 ? 1000000 : left);
    }
    pollfd pfd{fd, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) throw std::runtime_error(what + ": poll failed: " + errno_text());
    if (ready == 0) continue;  // the deadline check above decides
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) throw std::runtime_error(what + ": the store closed the connection (its host, rank 0, is gone)");
    p += r;
    n -= static_cast<size_t>(r);
  }
}

void put_u32(std::vector<char>& out, uint32_t v) {
  for (int i = 0; i < 4; i++) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::vector<char>& out, uint64_t v) {
  for (int i = 0; i < 8; i++) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++) v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

std::vector<char> answer(uint8_t status, const std::vector<char>& data) {
  std::vector<char> out;
  out.push_back(static_cast<char>(status));
  put_u64(out, data.size());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<char> text(const std::string& s) { return {s.begin(), s.end()}; }

/** A socket connected to `host`:`port`, or -1 with `why` set. */
int connect_to(const std::string& host, int port, std::string* why) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0) {
    *why = std::string("cannot resolve ") + host + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    *why = errno_text();
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(found);
  if (fd >= 0) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  return fd;
}

}  // namespace

// --- server -------------------------------------------------------------------------------------------------

struct TcpStoreServer::Client {
  int fd = -1;
  int rank = -1;
  bool said_bye = false;
  std::vector<char> inbox;
  bool waiting = false;
  std::string waiting_key;
};

TcpStoreServer::TcpStoreServer(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0) throw std::runtime_error("rendezvous store: cannot resolve " + host + ": " + gai_strerror(rc));
  std::string why = "no address";
  for (addrinfo* a = found; a != nullptr && listen_fd_ < 0; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 256) == 0) {
      listen_fd_ = fd;
    } else {
      why = errno_text();
      ::close(fd);
    }
  }
  ::freeaddrinfo(found);
  if (listen_fd_ < 0) {
    throw std::runtime_error("rendezvous store: cannot listen on " + (host.empty() ? std::string("*") : host) + ":" +
                             std::to_string(port) + " (" + why + "); is another job using MASTER_PORT " +
                             std::to_string(port) + "? Pick a free one");
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (::pipe2(wake_fd_, O_CLOEXEC) != 0) {
    ::close(listen_fd_);
    throw std::runtime_error("rendezvous store: pipe failed: " + errno_text());
  }
  thread_ = std::thread([this] { serve(); });
}

TcpStoreServer::~TcpStoreServer() {
  const char stop = 1;
  (void)!::write(wake_fd_[1], &stop, 1);
  if (thread_.joinable()) thread_.join();
  for (Client* c : clients_) {
    ::close(c->fd);
    delete c;
  }
  ::close(listen_fd_);
  ::close(wake_fd_[0]);
  ::close(wake_fd_[1]);
}

void TcpStoreServer::serve() {
  for (;;) {
    std::vector<pollfd> fds;
    fds.push_back({wake_fd_[0], POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    for (Client* c : clients_) fds.push_back({c->fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents != 0) return;
    if (fds[1].revents & POLLIN) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) {
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        auto* client = new Client();
        client->fd = fd;
        clients_.push_back(client);
      }
    }
    // Clients polled this round are the first fds.size() - 2 of clients_ (accept appends after them).
    std::vector<Client*> gone;
    for (size_t i = 2; i < fds.size(); i++) {
      if (fds[i].revents == 0) continue;
      Client* c = clients_[i - 2];
      char buf[65536];
      const ssize_t r = ::recv(c->fd, buf, sizeof(buf), 0);
      if (r <= 0) {
        if (r < 0 && errno == EINTR) continue;
        gone.push_back(c);
        continue;
      }
      c->inbox.insert(c->inbox.end(), buf, buf + r);
      if (!handle(*c)) gone.push_back(c);
    }
    for (Client* c : gone) {
      client_gone(*c);
      ::close(c->fd);
      clients_.erase(std::find(clients_.begin(), clients_.end(), c));
      delete c;
    }
  }
}

/** Serves every complete request in the client's inbox; false when the client must be dropped. */
bool TcpStoreServer::handle(Client& c) {
  for (;;) {
    if (c.inbox.size() < 5) return true;
    const uint32_t key_len = static_cast<uint32_t>(get_le(c.inbox.data() + 1, 4));
    if (c.inbox.size() < 5 + key_len + 8) return true;
    const uint64_t value_len = get_le(c.inbox.data() + 5 + key_len, 8);
    const size_t total = 5 + key_len + 8 + value_len;
    if (c.inbox.size() < total) return true;
    const uint8_t op = static_cast<uint8_t>(c.inbox[0]);
    std::string key(c.inbox.data() + 5, key_len);
    std::vector<char> value(c.inbox.begin() + 5 + key_len + 8, c.inbox.begin() + total);
    c.inbox.erase(c.inbox.begin(), c.inbox.begin() + total);
    std::vector<char> reply;
    switch (op) {
      case kHello:
        c.rank = std::stoi(std::string(value.begin(), value.end()));
        reply = answer(0, {});
        break;
      case kSet:
        data_[key] = value;
        reply = answer(0, {});
        break;
      case kGet: {
        auto it = data_.find(key);
        if (it == data_.end()) {
          c.waiting = true;
          c.waiting_key = key;
          break;
        }
        reply = answer(0, it->second);
        break;
      }
      case kAdd: {
        int64_t now = 0;
        auto it = data_.find(key);
        if (it != data_.end()) now = std::stoll(std::string(it->second.begin(), it->second.end()));
        now += std::stoll(std::string(value.begin(), value.end()));
        data_[key] = text(std::to_string(now));
        reply = answer(0, data_[key]);
        break;
      }
      case kCheck:
        reply = answer(0, text(data_.count(key) ? "1" : "0"));
        break;
      case kBye:
        c.said_bye = true;
        reply = answer(0, {});
        break;
      default:
        return false;  // not our protocol: drop the connection
    }
    if (!reply.empty() && !send_all(c.fd, reply.data(), reply.size())) return false;
    if (op == kSet || op == kAdd) answer_waiters(key);
  }
}

void TcpStoreServer::answer_waiters(const std::string& key) {
  auto it = data_.find(key);
  if (it == data_.end()) return;
  for (Client* w : clients_) {
    if (!w->waiting || w->waiting_key != key) continue;
    w->waiting = false;
    const std::vector<char> reply = answer(0, it->second);
    send_all(w->fd, reply.data(), reply.size());  // a waiter that is gone shows up at the next poll
  }
}

void TcpStoreServer::client_gone(Client& c) {
  if (c.rank < 0 || c.said_bye) return;
  data_["badam/gone/" + std::to_string(c.rank)] = text("1");
  if (!failed_published_) {
    failed_published_ = true;
    data_[kFailedKey] = text("rank " + std::to_string(c.rank) +
                             " exited or was killed (its connection to the rendezvous store closed without a goodbye)");
    answer_waiters(kFailedKey);
  }
}

// --- client -------------------------------------------------------------------------------------------------

TcpStoreClient::TcpStoreClient(const std::string& host, int port, int rank, std::chrono::milliseconds timeout)
    : address_(host + ":" + std::to_string(port)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string why;
  for (;;) {
    fd_ = connect_to(host, port, &why);
    if (fd_ >= 0) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      throw std::runtime_error("cannot reach the rendezvous store at " + address_ + " (" + why + ") within " +
                               std::to_string(timeout.count() / 1000) +
                               " s: is rank 0 running, and are MASTER_ADDR and MASTER_PORT the same on every rank?");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (rank >= 0) request(kHello, "", text(std::to_string(rank)), timeout);
}

TcpStoreClient::~TcpStoreClient() {
  if (fd_ >= 0) ::close(fd_);
}

std::vector<char> TcpStoreClient::request(uint8_t op, const std::string& key, const std::vector<char>& value,
                                          std::chrono::milliseconds timeout) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (fd_ < 0) throw std::runtime_error("rendezvous store: the connection is closed");
  std::vector<char> msg;
  msg.push_back(static_cast<char>(op));
  put_u32(msg, static_cast<uint32_t>(key.size()));
  msg.insert(msg.end(), key.begin(), key.end());
  put_u64(msg, value.size());
  msg.insert(msg.end(), value.begin(), value.end());
  const std::string what = "rendezvous store " + address_ + " (" + (key.empty() ? std::string("hello") : key) + ")";
  if (!send_all(fd_, msg.data(), msg.size())) {
    throw std::runtime_error(what + ": the store closed the connection (its host, rank 0, is gone)");
  }
  const bool forever = timeout.count() < 0;
  const auto deadline = std::chrono::steady_clock::now() + (forever ? std::chrono::milliseconds(0) : timeout);
  char head[9];
  recv_all(fd_, head, 9, deadline, forever, what);
  std::vector<char> data(get_le(head + 1, 8));
  if (!data.empty()) recv_all(fd_, data.data(), data.size(), deadline, forever, what);
  if (head[0] != 0) throw std::runtime_error(what + ": " + std::string(data.begin(), data.end()));
  return data;
}

void TcpStoreClient::set(const std::string& key, const std::vector<char>& value) {
  request(kSet, key, value, std::chrono::seconds(60));
}

std::vector<char> TcpStoreClient::get(const std::string& key, std::chrono::milliseconds timeout) {
  try {
    return request(kGet, key, {}, timeout);
  } catch (...) {
    // A GET that timed out leaves its answer in flight: the connection cannot be reused.
    std::lock_guard<std::mutex> lock(mutex_);
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    throw;
  }
}

int64_t TcpStoreClient::add(const std::string& key, int64_t delta) {
  const std::vector<char> v = request(kAdd, key, text(std::to_string(delta)), std::chrono::seconds(60));
  return std::stoll(std::string(v.begin(), v.end()));
}

bool TcpStoreClient::check(const std::string& key) {
  const std::vector<char> v = request(kCheck, key, {}, std::chrono::seconds(60));
  return !v.empty() && v[0] == '1';
}

void TcpStoreClient::bye() {
  try {
    request(kBye, "", {}, std::chrono::seconds(5));
  } catch (...) {
    // Gone already: nothing to say goodbye to.
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void TcpStoreClient::interrupt() {
  // No lock: the blocked call holds it. shutdown() makes its recv return, and it fails.
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

std::string local_address_toward(const std::string& host, int port) {
  if (host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1") return "127.0.0.1";
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return "";
  std::string out;
  for (addrinfo* a = found; a != nullptr && out.empty(); a = a->ai_next) {
    const int fd = ::socket(a->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      sockaddr_storage local{};
      socklen_t len = sizeof(local);
      if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
        char buf[INET6_ADDRSTRLEN] = {0};
        const void* src = local.ss_family == AF_INET6 ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr)
                                                      : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr);
        if (::inet_ntop(local.ss_family, src, buf, sizeof(buf)) != nullptr) out = buf;
      }
    }
    ::close(fd);
  }
  ::freeaddrinfo(found);
  return out;
}

}  // namespace badam::dist
