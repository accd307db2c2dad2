/* error.c — the thread-local "last error" message behind lm_last_error().
 * A library function records why it failed and returns a status code; only the
 * CLI decides to print and exit. */
#include <stdarg.h>
#include <string.h>
#include "base/base.h"

static _Thread_local char g_msg[1024];

lm_status lm_error(lm_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_msg, sizeof g_msg, fmt, ap);
  va_end(ap);
  return st;
}

lm_status lm_error_prefix(lm_status st, const char *fmt, ...) {
  char prefix[512], old[sizeof g_msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, g_msg, sizeof old);
  snprintf(g_msg, sizeof g_msg, "%.500s: %.500s", prefix, old);
  return st;
}

const char *lm_last_error(void) { return g_msg[0] ? g_msg : "no error"; }

void lm_clear_error(void) { g_msg[0] = 0; }

const char *lm_status_str(lm_status st) {
  switch (st) {
    case LM_OK: return "ok";
    case LM_ERR_ARG: return "invalid argument";
    case LM_ERR_IO: return "i/o error";
    case LM_ERR_FORMAT: return "malformed input";
    case LM_ERR_NOMEM: return "out of memory";
    case LM_ERR_UNSUPPORTED: return "unsupported";
    case LM_ERR_RANGE: return "out of range";
  }
  return "unknown error";
}
