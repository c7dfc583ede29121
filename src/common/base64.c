/* SPDX-License-Identifier: Apache-2.0 */
/* base64.c: base64 (RFC 4648) both ways, for the guest agent's file and exec data. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "common/error.h"

static const char b64_alphabet[]
  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int
b64_value (char c)
{
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

char *
base64_decode (const char *in, size_t *len)
{
  size_t n = strlen (in), o = 0;
  char *out = malloc (n / 4 * 3 + 4);
  unsigned acc = 0, bits = 0;

  if (out == NULL) {
    set_error (errno, "malloc");
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    int v;

    if (in[i] == '=')
      break;
    if (in[i] == '\n' || in[i] == '\r')
      continue;
    v = b64_value (in[i]);
    if (v < 0) {
      free (out);
      set_error (EINVAL, "malformed base64");
      return NULL;
    }
    acc = (acc << 6) | (unsigned) v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (char) ((acc >> bits) & 0xff);
    }
  }
  out[o] = '\0';
  *len = o;
  return out;
}

char *
base64_encode (const void *data, size_t len)
{
  const unsigned char *in = data;
  char *out = malloc ((len + 2) / 3 * 4 + 1), *p = out;

  if (out == NULL) {
    set_error (errno, "malloc");
    return NULL;
  }
  for (size_t i = 0; i < len; i += 3) {
    unsigned v = (unsigned) in[i] << 16;

    if (i + 1 < len)
      v |= (unsigned) in[i + 1] << 8;
    if (i + 2 < len)
      v |= in[i + 2];
    *p++ = b64_alphabet[(v >> 18) & 63];
    *p++ = b64_alphabet[(v >> 12) & 63];
    *p++ = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
    *p++ = i + 2 < len ? b64_alphabet[v & 63] : '=';
  }
  *p = '\0';
  return out;
}
