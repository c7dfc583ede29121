/* SPDX-License-Identifier: Apache-2.0 */
/* base64.h: base64 (RFC 4648) both ways. */
#ifndef KNIB_COMMON_BASE64_H
#define KNIB_COMMON_BASE64_H

#include <stddef.h>

/* Decode base64 (padding optional, line breaks skipped): a new buffer,
 * NUL terminated (*len without the NUL).  NULL with set_error (EINVAL)
 * on bad input. */
char *base64_decode (const char *in, size_t *len)
  __attribute__ ((warn_unused_result));

/* Encode len bytes of data, padded: a new NUL-terminated string.  NULL
 * with set_error on ENOMEM. */
char *base64_encode (const void *data, size_t len)
  __attribute__ ((warn_unused_result));

#endif
