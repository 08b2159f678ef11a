// The chaos driver (--chaos): task management requests and dropped
// connections at random, and what their answers prove about held writes.
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "bench.hpp"

namespace ringtgt::bench {

void tmf_cb(iscsi_context*, int status, void* data, void* priv) {
  auto* t = static_cast<Tmf*>(priv);
  t->session->bench->on_tmf(*t, status, data);
}

// One random event on one random ready session.
void Bench::chaos_event() {
  int weights[static_cast<int>(Chaos::kCount)];
  int total = 0;
  for (int i = 0; i < static_cast<int>(Chaos::kCount); i++) {
    weights[i] = (o_.chaos_mask >> i) & 1 ? kChaosWeights[i] : 0;
    total += weights[i];
  }
  if (total == 0) return;
  int roll = static_cast<int>(chaos_rng_.below(static_cast<std::uint64_t>(total)));
  int what = 0;
  while (roll >= weights[what]) roll -= weights[what++];
  auto first = chaos_rng_.below(sessions_.size());
  for (std::size_t i = 0; i < sessions_.size(); i++) {
    Session& s = *sessions_[(first + i) % sessions_.size()];
    if (s.state != SessState::kReady || !s.ctx) continue;
    auto ev = static_cast<Chaos>(what);
    if (ev == Chaos::kDrop) {
      chaos_sent_[what]++;
      chaos_done_[what]++;
      kill_session(s, "chaos: connection dropped");
      return;
    }
    if (send_tmf(s, ev)) chaos_sent_[what]++;
    return;
  }
}

bool Bench::send_tmf(Session& s, Chaos what) {
  auto t = std::make_unique<Tmf>(
      Tmf{&s, what, issue_seq_ + 1, 0, iscsi_out_queue_length(s.ctx) == 0, now_ns()});
  int rc = -1;
  switch (what) {
    case Chaos::kAbortTask: {
      std::vector<Io*> cands;
      for (auto& io : s.ios)
        if (io.busy && !io.completed && io.task) cands.push_back(&io);
      if (cands.empty()) return false;
      Io& victim = *cands[chaos_rng_.below(cands.size())];
      t->abort_seq = victim.issue_seq;
      Tmf* raw = t.get();
      s.tmfs.push_back(std::move(t));
      // libiscsi cancels the task locally: its callback may run right here.
      if (iscsi_task_mgmt_abort_task_async(s.ctx, victim.task, tmf_cb, raw) != 0) s.tmfs.pop_back();
      return true;
    }
    case Chaos::kAbortTaskSet:
      rc = iscsi_task_mgmt_abort_task_set_async(s.ctx, static_cast<std::uint32_t>(lun_), tmf_cb,
                                                t.get());
      break;
    case Chaos::kLuReset:
      rc =
          iscsi_task_mgmt_lun_reset_async(s.ctx, static_cast<std::uint32_t>(lun_), tmf_cb, t.get());
      break;
    case Chaos::kTargetReset:
      rc = iscsi_task_mgmt_target_warm_reset_async(s.ctx, tmf_cb, t.get());
      break;
    default:
      return false;
  }
  if (rc != 0) return false;
  s.tmfs.push_back(std::move(t));
  return true;
}

// The answer to a task management request: "function complete" (or "task
// does not exist") means the commands it covers are gone from the target, so
// their blocks are free again. A reset also ended the other sessions'
// commands, which get no answer: those sessions are dropped and log in again.
void Bench::on_tmf(Tmf& t, int status, void* data) {
  Session& s = *t.session;
  auto what = static_cast<int>(t.what);
  std::uint32_t response =
      status == SCSI_STATUS_GOOD && data ? *static_cast<std::uint32_t*>(data) : 0xffffffffu;
  if (response == ISCSI_TMR_FUNC_COMPLETE || response == ISCSI_TMR_TASK_DOES_NOT_EXIST) {
    chaos_done_[what]++;
    // Without a fence, the blocks of commands that may have gone out after it
    // wait for a relogin.
    if (t.fences && t.what == Chaos::kAbortTask)
      release_held(s, 0, t.abort_seq);
    else if (t.fences)
      release_held(s, t.sent_seq, 0);
  } else {
    detail("session %d: %s answered %s %u", s.id, kChaosNames[what],
           status == SCSI_STATUS_GOOD ? "response" : "status",
           status == SCSI_STATUS_GOOD ? response : static_cast<std::uint32_t>(status));
  }
  Chaos kind = t.what;
  std::uint64_t sent = t.sent_seq;
  s.tmfs.erase(std::remove_if(s.tmfs.begin(), s.tmfs.end(),
                              [&](const std::unique_ptr<Tmf>& p) { return p.get() == &t; }),
               s.tmfs.end());
  if (kind == Chaos::kLuReset || kind == Chaos::kTargetReset) drop_others_after_reset(s, sent);
}

void Bench::drop_others_after_reset(const Session& sender, std::uint64_t sent_seq) {
  for (auto& sp : sessions_) {
    Session& o = *sp;
    if (&o == &sender || o.state != SessState::kReady) continue;
    bool ended = false;
    for (auto& io : o.ios) ended |= io.busy && !io.completed && io.issue_seq < sent_seq;
    if (ended) reset_victims_.push_back(&o);
  }
}

// A task management request unanswered after --timeout: the target hangs in
// it (it answers once the commands it ends are gone, which takes no longer
// than the commands themselves). Counted as a failure; the session is dropped.
bool Bench::tmf_stuck(Session& s, std::uint64_t now, std::uint64_t limit) {
  for (const auto& t : s.tmfs) {
    if (now <= t->sent_ns || now - t->sent_ns <= limit) continue;
    tmf_timeouts_++;
    std::fprintf(stderr, "ringtgt-bench: session %d: %s unanswered after %.1f s\n", s.id,
                 kChaosNames[static_cast<int>(t->what)], o_.timeout_s);
    kill_session(s, "task management request timed out");
    return true;
  }
  return false;
}

// Exponentially distributed gaps: events at --chaos per second on average.
std::uint64_t Bench::chaos_gap_ns() {
  double u = static_cast<double>(chaos_rng_.next() >> 11) / 9007199254740992.0;
  return static_cast<std::uint64_t>(-std::log1p(-u) / o_.chaos_rate * 1e9);
}

void Bench::drop_reset_victims() {
  std::vector<Session*> victims;
  victims.swap(reset_victims_);
  for (Session* v : victims)
    if (v->state == SessState::kReady)
      kill_session(*v, "chaos: a reset from another session ended its commands");
}

}  // namespace ringtgt::bench
