/* Login shared by the libiscsi test tools (pr_tool, xcopy_tool). */
#pragma once

#include <iscsi/iscsi.h>
#include <stdio.h>

/* Logs in to URL (iscsi://HOST:PORT/IQN/LUN) as initiator and sets *lun;
 * NULL after printing why. A nonzero isid fixes the ISID, so that every run
 * is the same initiator port (as open-iscsi's per-interface one is); 0 lets
 * libiscsi pick one. Header digests are offered (None first). */
static inline struct iscsi_context* tool_login(const char* initiator, const char* url, int* lun,
                                               int isid) {
  struct iscsi_context* iscsi = iscsi_create_context(initiator);
  if (iscsi == NULL) {
    fprintf(stderr, "cannot create an iSCSI context\n");
    return NULL;
  }
  struct iscsi_url* u = iscsi_parse_full_url(iscsi, url);
  if (u == NULL) {
    fprintf(stderr, "bad URL %s: %s\n", url, iscsi_get_error(iscsi));
    iscsi_destroy_context(iscsi);
    return NULL;
  }
  if (isid != 0) iscsi_set_isid_random(iscsi, isid, 1);
  iscsi_set_targetname(iscsi, u->target);
  iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
  iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE_CRC32C);
  *lun = u->lun;
  /* Logs in and clears the unit attentions of a new nexus with TEST UNIT READY. */
  if (iscsi_full_connect_sync(iscsi, u->portal, u->lun) != 0) {
    fprintf(stderr, "login to %s failed: %s\n", url, iscsi_get_error(iscsi));
    iscsi_destroy_url(u);
    iscsi_destroy_context(iscsi);
    return NULL;
  }
  iscsi_destroy_url(u);
  return iscsi;
}
