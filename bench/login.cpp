// Logging a session in: the TCP connect, the iSCSI login, then TEST UNIT READY
// until the unit attentions a new I_T nexus starts with are consumed.
//
// libiscsi's iscsi_full_connect_async does the same three steps, but keeps
// its own state for them that only its callbacks free, and
// iscsi_destroy_context skips those callbacks before the login completes: a
// login cut by --timeout or by a target that dies mid-login leaks it (libiscsi
// 1.19), and the sanitizer soak aborts on the leak. Driven from here, the
// steps hold nothing but the session's own pointer.
#include <cstdio>

#include "bench.hpp"

namespace ringtgt::bench {

namespace {

// The unit attentions a login may meet before the LUN counts as broken.
constexpr int kMaxLoginUnitAttentions = 10;

void tcp_connected_cb(iscsi_context*, int status, void*, void* priv) {
  auto* s = static_cast<Session*>(priv);
  s->bench->on_tcp_connected(*s, status);
}

void login_cb(iscsi_context*, int status, void*, void* priv) {
  auto* s = static_cast<Session*>(priv);
  s->bench->on_login(*s, status);
}

// command_data is not used: a cancelled command has none, and the task is
// the session's login_tur either way.
void login_tur_cb(iscsi_context*, int status, void*, void* priv) {
  auto* s = static_cast<Session*>(priv);
  s->bench->on_login_tur(*s, status);
}

// Whether the TEST UNIT READY at the end of a login found a LUN that can take
// commands. As for libiscsi's own login: a reservation held by someone else,
// no medium or a sanitize in progress do not fail it.
bool lun_answers(int status, const scsi_task* t) {
  if (status == SCSI_STATUS_GOOD || status == SCSI_STATUS_RESERVATION_CONFLICT) return true;
  return status == SCSI_STATUS_CHECK_CONDITION && t && t->sense.key == SCSI_SENSE_NOT_READY;
}

}  // namespace

// Starts a login of s with its ISID (the same one every time: a second login
// reinstates the session).
bool Bench::start_login(Session& s) {
  s.ctx = iscsi_create_context(o_.initiator.c_str());
  if (!s.ctx) {
    std::fprintf(stderr, "ringtgt-bench: cannot create an iSCSI context\n");
    return false;
  }
  iscsi_set_targetname(s.ctx, target_.c_str());
  iscsi_set_session_type(s.ctx, ISCSI_SESSION_NORMAL);
  iscsi_set_header_digest(s.ctx, ISCSI_HEADER_DIGEST_NONE_CRC32C);
  iscsi_set_noautoreconnect(s.ctx, 1);
  // A distinct ISID per session: each is its own I_T nexus.
  iscsi_set_isid_random(s.ctx, s.isid_rnd, static_cast<std::uint32_t>(s.id));
  if (!user_.empty()) iscsi_set_initiator_username_pwd(s.ctx, user_.c_str(), passwd_.c_str());
  s.state = SessState::kConnecting;
  s.login_started = now_ns();
  s.login_unit_attentions = 0;
  if (iscsi_connect_async(s.ctx, portal_.c_str(), tcp_connected_cb, &s) != 0) {
    if (s.first_login)
      std::fprintf(stderr, "ringtgt-bench: session %d: connect to %s failed: %s\n", s.id,
                   portal_.c_str(), iscsi_get_error(s.ctx));
    iscsi_destroy_context(s.ctx);
    s.ctx = nullptr;
    return false;
  }
  return true;
}

// The callbacks below also run inside iscsi_destroy_context when
// kill_session ends a login; the session is no longer kConnecting then, and
// they only let go of what they hold.
void Bench::on_tcp_connected(Session& s, int status) {
  if (s.state != SessState::kConnecting) return;
  if (status != SCSI_STATUS_GOOD) return on_connect(s, SCSI_STATUS_ERROR);
  if (iscsi_login_async(s.ctx, login_cb, &s) != 0) on_connect(s, SCSI_STATUS_ERROR);
}

void Bench::on_login(Session& s, int status) {
  if (s.state != SessState::kConnecting) return;
  if (status != SCSI_STATUS_GOOD) return on_connect(s, SCSI_STATUS_ERROR);
  send_login_tur(s);
}

void Bench::send_login_tur(Session& s) {
  s.login_tur = iscsi_testunitready_task(s.ctx, lun_, login_tur_cb, &s);
  if (!s.login_tur) on_connect(s, SCSI_STATUS_ERROR);
}

void Bench::on_login_tur(Session& s, int status) {
  scsi_task* t = s.login_tur;
  s.login_tur = nullptr;
  const bool unit_attention =
      status == SCSI_STATUS_CHECK_CONDITION && t && t->sense.key == SCSI_SENSE_UNIT_ATTENTION;
  const bool answers = lun_answers(status, t);
  if (t) scsi_free_scsi_task(t);
  if (s.state != SessState::kConnecting) return;
  if (unit_attention && ++s.login_unit_attentions <= kMaxLoginUnitAttentions)
    return send_login_tur(s);
  on_connect(s, answers ? SCSI_STATUS_GOOD : SCSI_STATUS_ERROR);
}

}  // namespace ringtgt::bench
