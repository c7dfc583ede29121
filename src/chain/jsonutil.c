/* jsonutil.c: strict reading of the repository's JSON objects. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "internal.h"

int
chain_invalid (const char *fmt, ...)
{
  va_list ap;
  CLEANUP_FREE char *msg = NULL;

  va_start (ap, fmt);
  if (vasprintf (&msg, fmt, ap) == -1)
    msg = NULL;
  va_end (ap);
  set_error (0, "%s", msg ? msg : "invalid content");
  errno = EINVAL;
  return -1;
}

int
chain_json_check_keys (const json_t *o, const char *const *keys,
                       const char *where)
{
  const char *key;
  json_t *v;

  json_object_foreach ((json_t *) o, key, v)
  {
    size_t i = 0;
    while (keys[i] && strcmp (keys[i], key) != 0)
      i++;
    if (keys[i] == NULL)
      return chain_invalid ("%sunknown key '%s'", where, key);
  }
  for (size_t i = 0; keys[i]; i++)
    if (json_object_get (o, keys[i]) == NULL)
      return chain_invalid ("%s'%s' is missing", where, keys[i]);
  return 0;
}

int
chain_json_get_string (const json_t *o, const char *key, const char *where,
                       bool nullable, const char **out)
{
  const json_t *v = json_object_get (o, key);

  if (nullable && json_is_null (v)) {
    *out = NULL;
    return 0;
  }
  if (!json_is_string (v))
    return chain_invalid ("%s'%s' must be a string%s", where, key,
                          nullable ? " or null" : "");
  *out = json_string_value (v);
  if (strlen (*out) != json_string_length (v))
    return chain_invalid ("%s'%s' holds a NUL character", where, key);
  return 0;
}

int
chain_json_get_int (const json_t *o, const char *key, const char *where,
                    int64_t min, int64_t max, const char *what, int64_t *out)
{
  const json_t *v = json_object_get (o, key);

  if (!json_is_integer (v) || json_integer_value (v) < min
      || json_integer_value (v) > max)
    return chain_invalid ("%s'%s' must be %s", where, key, what);
  *out = json_integer_value (v);
  return 0;
}
