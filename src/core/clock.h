/* clock.h — wall time for durations (progress, benchmarks, metrics): seconds on the
 * monotonic clock, which jumps neither with the date nor with NTP. */
#ifndef MMT_CORE_CLOCK_H
#define MMT_CORE_CLOCK_H

double mmt_now_seconds(void);

#endif
