/* log.h — the library's one logger; the caller can replace or silence it (mmtune.h). */
#ifndef MMT_CORE_LOG_H
#define MMT_CORE_LOG_H

#include "core/status.h"

void mmt_log(mmt_log_level level, const char *fmt, ...) MMT_PRINTF(2, 3);
#define mmt_log_debug(...) mmt_log(MMT_LOG_DEBUG, __VA_ARGS__)
#define mmt_log_info(...) mmt_log(MMT_LOG_INFO, __VA_ARGS__)
#define mmt_log_warn(...) mmt_log(MMT_LOG_WARN, __VA_ARGS__)

#endif
