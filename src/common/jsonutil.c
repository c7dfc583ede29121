/* SPDX-License-Identifier: Apache-2.0 */
/* jsonutil.c: JSON files written atomically and read strictly. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/jsonutil.h"

int
jsonutil_invalid (const char *fmt, ...)
{
  va_list ap;
  CLEANUP_FREE char *msg = NULL;

  va_start (ap, fmt);
  if (vasprintf (&msg, fmt, ap) == -1)
    msg = NULL;
  va_end (ap);
  set_error (-EINVAL, "%s", msg ? msg : "invalid content");
  return -1;
}

json_t *
jsonutil_load (const char *path, const char *what)
{
  CLEANUP_FREE char *text = NULL;
  json_error_t err;
  json_t *j;
  size_t len;

  text = fs_read_file (path, what, JSONUTIL_MAX, &len);
  if (text == NULL)
    return NULL;
  if (len == 0) {
    set_error (-EINVAL, "%s '%s': the file is empty", what, path);
    return NULL;
  }
  j = json_loadb (text, len, JSON_REJECT_DUPLICATES, &err);
  if (j == NULL) {
    set_error (-EINVAL, "%s '%s': invalid JSON at line %d: %s", what, path,
               err.line, err.text);
    return NULL;
  }
  if (!json_is_object (j)) {
    json_decref (j);
    set_error (-EINVAL, "%s '%s': not a JSON object", what, path);
    return NULL;
  }
  return j;
}

int
jsonutil_commit (const json_t *j, const char *dir, const char *name,
                 const char *what)
{
  CLEANUP_FREE char *text = json_dumps (j, JSON_INDENT (2));
  size_t len;

  if (text == NULL) {
    set_error (ENOMEM, "%s '%s/%s': json_dumps", what, dir, name);
    return -1;
  }
  /* json_dumps leaves no final newline: add one in place of the NUL. */
  len = strlen (text);
  text[len] = '\n';
  return fs_replace_file (dir, name, text, len + 1, what);
}

int
jsonutil_check_keys (const json_t *o, const char *const *keys,
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
      return jsonutil_invalid ("%sunknown key '%s'", where, key);
  }
  for (size_t i = 0; keys[i]; i++)
    if (json_object_get (o, keys[i]) == NULL)
      return jsonutil_invalid ("%s'%s' is missing", where, keys[i]);
  return 0;
}

int
jsonutil_get_string (const json_t *o, const char *key, const char *where,
                     bool nullable, const char **out)
{
  const json_t *v = json_object_get (o, key);

  if (nullable && json_is_null (v)) {
    *out = NULL;
    return 0;
  }
  if (!json_is_string (v))
    return jsonutil_invalid ("%s'%s' must be a string%s", where, key,
                             nullable ? " or null" : "");
  *out = json_string_value (v);
  if (strlen (*out) != json_string_length (v))
    return jsonutil_invalid ("%s'%s' holds a NUL character", where, key);
  return 0;
}

int
jsonutil_get_int (const json_t *o, const char *key, const char *where,
                  int64_t min, int64_t max, const char *what, int64_t *out)
{
  const json_t *v = json_object_get (o, key);

  if (!json_is_integer (v) || json_integer_value (v) < min
      || json_integer_value (v) > max)
    return jsonutil_invalid ("%s'%s' must be %s", where, key, what);
  *out = json_integer_value (v);
  return 0;
}
