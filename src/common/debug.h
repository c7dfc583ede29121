/* SPDX-License-Identifier: Apache-2.0 */
/* debug.h: opt-in tracing (-v, KNIB_DEBUG=qmp,...) such as raw QMP traffic. */
#ifndef KNIB_COMMON_DEBUG_H
#define KNIB_COMMON_DEBUG_H

#include <stdbool.h>

enum debug_topic {
  DEBUG_QMP = 1u << 0,
  DEBUG_NBD = 1u << 1,
  DEBUG_QCOW2 = 1u << 2,
  DEBUG_CHAIN = 1u << 3,
  DEBUG_CMD = 1u << 4,
};

#define DEBUG_ALL 0xffffffffu

/* Parse "qmp,nbd", "all" or "1" into a mask.  Returns 0 or -1 (set_error). */
int debug_parse (const char *spec, unsigned *mask)
  __attribute__ ((warn_unused_result));

void debug_set (unsigned mask);
unsigned debug_get (void);

static inline bool
debug_enabled (unsigned topic)
{
  return (debug_get () & topic) != 0;
}

/* Write one trace line to stderr: "knib: debug TOPIC: message". */
void debug (unsigned topic, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

#endif
