#include "ringtgt/admin/admin_server.hpp"

#include <grp.h>
#include <pwd.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

namespace ringtgt::admin {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;

// One connected peer: reads a line, answers it, reads the next. Everything runs on
// the control-plane thread, so clients never block each other or a reactor.
class AdminServer::Client : public std::enable_shared_from_this<Client> {
 public:
  Client(AdminServer& server, local::socket socket, std::string who)
      : server_(server),
        socket_(std::move(socket)),
        in_(kMaxMessageBytes + 1),
        timer_(server.io_),
        who_(std::move(who)),
        count_(server.clients_) {
    ++*count_;
  }
  // The count outlives the server: clients still queued when the io_context is
  // destroyed at exit are destroyed after the AdminServer.
  ~Client() { --*count_; }

  void start() { read(); }

  // Sends one error and closes (peer not permitted, too many clients).
  void refuse(int code, const std::string& message) {
    send(error_response(nullptr, code, message).dump());
    closing_ = true;
  }

 private:
  void arm_idle_timer() {
    timer_.expires_after(kIdleLimit);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec) return;
      spdlog::info("admin: {}: idle for {}s, closing", self->who_, kIdleLimit.count());
      boost::system::error_code ignored;
      self->socket_.close(ignored);
    });
  }

  void read() {
    arm_idle_timer();
    asio::async_read_until(
        socket_, in_, '\n',
        [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
          self->timer_.cancel();
          if (ec == asio::error::not_found) {
            spdlog::warn("admin: {}: request longer than {} bytes, closing", self->who_,
                         kMaxMessageBytes);
            self->refuse(rpc_error::invalid_request, "request longer than " +
                                                         std::to_string(kMaxMessageBytes) +
                                                         " bytes (one JSON object per line)");
            return;
          }
          if (ec) return;  // peer gone
          std::string line(asio::buffers_begin(self->in_.data()),
                           asio::buffers_begin(self->in_.data()) + static_cast<long>(n) - 1);
          self->in_.consume(n);
          if (!line.empty() && line.back() == '\r') line.pop_back();
          if (line.find_first_not_of(" \t") == std::string::npos) return self->read();
          // The next request is read once this one is answered (maybe later: methods
          // that ask the reactors answer asynchronously); a notification gets no answer.
          bool answers = self->server_.dispatcher_.handle_line(line, [self](std::string response) {
            self->send(std::move(response));
            if (!self->closing_) self->read();
          });
          if (!answers) self->read();
        });
  }

  void send(std::string text) {
    text += '\n';
    out_.push_back(std::move(text));
    if (out_.size() == 1) write_next();
  }

  void write_next() {
    asio::async_write(socket_, asio::buffer(out_.front()),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        if (ec) return;
                        self->out_.erase(self->out_.begin());
                        if (!self->out_.empty()) return self->write_next();
                        if (self->closing_) {
                          boost::system::error_code ignored;
                          self->socket_.shutdown(local::socket::shutdown_both, ignored);
                          self->socket_.close(ignored);
                        }
                      });
  }

  AdminServer& server_;
  local::socket socket_;
  asio::streambuf in_;
  asio::steady_timer timer_;
  std::vector<std::string> out_;
  std::string who_;
  std::shared_ptr<std::size_t> count_;
  bool closing_ = false;
};

AdminServer::AdminServer(asio::io_context& io, const Dispatcher& dispatcher)
    : io_(io), dispatcher_(dispatcher) {}

AdminServer::~AdminServer() {
  stop();
}

void AdminServer::start(const std::string& path, const std::string& group) {
  namespace fs = std::filesystem;
  path_ = path;
  group_ = group;
  if (!group.empty()) {
    struct group* g = ::getgrnam(group.c_str());
    if (!g) throw std::runtime_error("admin socket: group \"" + group + "\" does not exist");
    gid_ = g->gr_gid;
  }
  std::error_code ec;
  fs::path dir = fs::path(path).parent_path();
  if (!dir.empty() && !fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec) {
      throw std::runtime_error("admin socket: cannot create folder " + dir.string() + ": " +
                               ec.message());
    }
    ::chmod(dir.c_str(), 0755);
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      throw std::runtime_error("admin socket: " + path +
                               " exists and is not a socket; remove it or set [admin] socket");
    }
    // A socket someone answers on belongs to a running daemon; one nobody answers on
    // was left by a daemon that died.
    local::socket probe(io_);
    boost::system::error_code cec;
    probe.connect(local::endpoint(path), cec);
    if (!cec) {
      throw std::runtime_error("admin socket: " + path +
                               " is in use by another running ringtgt; stop it or set another "
                               "[admin] socket");
    }
    ::unlink(path.c_str());
    spdlog::info("admin socket: replaced stale {}", path);
  }
  acceptor_ = std::make_unique<local::acceptor>(io_);
  boost::system::error_code bec;
  // The socket is created with mode 0660 from the start: no window where others may connect.
  mode_t old_mask = ::umask(0117);
  acceptor_->open(local(), bec);
  if (!bec) acceptor_->bind(local::endpoint(path), bec);
  ::umask(old_mask);
  if (!bec) acceptor_->listen(asio::socket_base::max_listen_connections, bec);
  if (bec) {
    acceptor_.reset();
    throw std::runtime_error("admin socket: cannot listen on " + path + ": " + bec.message());
  }
  if (gid_ && ::chown(path.c_str(), static_cast<uid_t>(-1), *gid_) != 0) {
    spdlog::warn("admin socket: cannot give {} to group {}: {}", path, group, std::strerror(errno));
  }
  ::chmod(path.c_str(), 0660);
  spdlog::info("admin socket on {} (root, uid {}{})", path, ::geteuid(),
               group.empty() ? "" : ", group " + group);
  accept();
}

void AdminServer::stop() {
  if (stopped_ || !acceptor_) return;
  stopped_ = true;
  boost::system::error_code ec;
  acceptor_->close(ec);
  ::unlink(path_.c_str());
}

bool AdminServer::permitted(uid_t uid, gid_t gid) const {
  if (uid == 0 || uid == ::geteuid()) return true;
  if (!gid_) return false;
  if (gid == *gid_) return true;
  // The peer's supplementary groups, from the group database.
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || !found) return false;
  int n = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(n));
  if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<std::size_t>(n));
    if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) return false;
  }
  for (int i = 0; i < n; ++i)
    if (groups[static_cast<std::size_t>(i)] == *gid_) return true;
  return false;
}

void AdminServer::accept() {
  acceptor_->async_accept([this](boost::system::error_code ec, local::socket socket) {
    if (stopped_ || ec == asio::error::operation_aborted) return;
    if (ec) {
      spdlog::warn("admin socket: accept: {}", ec.message());
      return accept();
    }
    ucred cred{};
    socklen_t len = sizeof cred;
    bool known = ::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0;
    std::string who = known ? "uid " + std::to_string(cred.uid) + " pid " + std::to_string(cred.pid)
                            : "unknown peer";
    auto client = std::make_shared<Client>(*this, std::move(socket), who);
    if (!known || !permitted(cred.uid, cred.gid)) {
      spdlog::warn("admin socket: refused {}: not root, uid {}{}", who, ::geteuid(),
                   group_.empty() ? "" : " or a member of group " + group_);
      client->refuse(rpc_error::permission_denied,
                     "permission denied: " + who + " is not root, the daemon's user" +
                         (group_.empty() ? std::string() : " or a member of group " + group_));
    } else if (*clients_ > kMaxClients) {
      spdlog::warn("admin socket: refused {}: {} clients connected already", who, kMaxClients);
      client->refuse(rpc_error::refused, "too many admin clients connected; try again later");
    } else {
      spdlog::debug("admin socket: {} connected", who);
      client->start();
    }
    accept();
  });
}

}  // namespace ringtgt::admin
