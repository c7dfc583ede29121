/* SPDX-License-Identifier: Apache-2.0 */
/* block.c: typed wrappers of the QMP block and job commands knib uses, and
 * of the run state around them. */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <jansson.h>

#include "common/error.h"
#include "qmp.h"

int
qmp_client_execute_packed (struct qmp_client *c, const char *command,
                           json_t *args, json_t **result)
{
  if (args == NULL) {
    set_error (ENOMEM, "qmp '%s': cannot build the arguments", command);
    return -1;
  }
  return qmp_client_execute (c, command, args, result);
}

/* The list a query command returns: -1 unless it is a JSON array. */
static int
query_list (struct qmp_client *c, const char *command, json_t *args,
            json_t **list)
{
  json_t *r = NULL;

  if (qmp_client_execute (c, command, args, &r) == -1)
    return -1;
  if (!json_is_array (r)) {
    json_decref (r);
    set_error (-EPROTO, "qmp '%s': the reply is not a list", command);
    return -1;
  }
  *list = r;
  return 0;
}

/* A command whose one argument is "id" (a job's, an export's). */
static int
execute_on_id (struct qmp_client *c, const char *command, const char *id)
{
  return qmp_client_execute_packed (c, command, json_pack ("{s:s}", "id", id),
                                    NULL);
}

int
qmp_query_block (struct qmp_client *c, json_t **list)
{
  return query_list (c, "query-block", NULL, list);
}

int
qmp_query_named_block_nodes (struct qmp_client *c, bool flat, json_t **list)
{
  json_t *args = NULL;

  if (flat && (args = json_pack ("{s:b}", "flat", 1)) == NULL)
    return qmp_client_execute_packed (c, "query-named-block-nodes", NULL, NULL);
  return query_list (c, "query-named-block-nodes", args, list);
}

int
qmp_query_jobs (struct qmp_client *c, json_t **list)
{
  return query_list (c, "query-jobs", NULL, list);
}

int
qmp_query_block_exports (struct qmp_client *c, json_t **list)
{
  return query_list (c, "query-block-exports", NULL, list);
}

int
qmp_query_fdsets (struct qmp_client *c, json_t **list)
{
  return query_list (c, "query-fdsets", NULL, list);
}

int
qmp_blockdev_del (struct qmp_client *c, const char *node)
{
  return qmp_client_execute_packed (
    c, "blockdev-del", json_pack ("{s:s}", "node-name", node), NULL);
}

int
qmp_add_fd (struct qmp_client *c, int fd, const char *opaque, int64_t *fdset)
{
  json_t *args = json_pack ("{s:s}", "opaque", opaque);
  json_t *r = NULL;
  json_t *id;

  if (args == NULL)
    return qmp_client_execute_packed (c, "add-fd", NULL, NULL);
  if (qmp_client_execute_with_fd (c, "add-fd", args, fd, &r) == -1)
    return -1;
  id = json_object_get (r, "fdset-id");
  if (!json_is_integer (id)) {
    json_decref (r);
    set_error (-EPROTO, "qmp 'add-fd': the reply has no fdset-id");
    return -1;
  }
  *fdset = json_integer_value (id);
  json_decref (r);
  return 0;
}

int
qmp_remove_fdset (struct qmp_client *c, int64_t fdset)
{
  return qmp_client_execute_packed (
    c, "remove-fd", json_pack ("{s:I}", "fdset-id", (json_int_t) fdset), NULL);
}

int
qmp_bitmap_add (struct qmp_client *c, const char *node, const char *name,
                bool persistent, bool disabled)
{
  return qmp_client_execute_packed (
    c, "block-dirty-bitmap-add",
    json_pack ("{s:s, s:s, s:b, s:b}", "node", node, "name", name, "persistent",
               persistent, "disabled", disabled),
    NULL);
}

int
qmp_bitmap_remove (struct qmp_client *c, const char *node, const char *name)
{
  return qmp_client_execute_packed (
    c, "block-dirty-bitmap-remove",
    json_pack ("{s:s, s:s}", "node", node, "name", name), NULL);
}

int
qmp_bitmap_enable (struct qmp_client *c, const char *node, const char *name)
{
  return qmp_client_execute_packed (
    c, "block-dirty-bitmap-enable",
    json_pack ("{s:s, s:s}", "node", node, "name", name), NULL);
}

int
qmp_bitmap_disable (struct qmp_client *c, const char *node, const char *name)
{
  return qmp_client_execute_packed (
    c, "block-dirty-bitmap-disable",
    json_pack ("{s:s, s:s}", "node", node, "name", name), NULL);
}

int
qmp_bitmap_merge (struct qmp_client *c, const char *node, const char *target,
                  const char *src_node, const char *src_name)
{
  json_t *source
    = src_node ? json_pack ("{s:s, s:s}", "node", src_node, "name", src_name)
               : json_string (src_name);

  if (source == NULL)
    return qmp_client_execute_packed (c, "block-dirty-bitmap-merge", NULL,
                                      NULL);
  return qmp_client_execute_packed (c, "block-dirty-bitmap-merge",
                                    json_pack ("{s:s, s:s, s:[o]}", "node",
                                               node, "target", target,
                                               "bitmaps", source),
                                    NULL);
}

int
qmp_nbd_server_start_unix (struct qmp_client *c, const char *path)
{
  return qmp_client_execute_packed (c, "nbd-server-start",
                                    json_pack ("{s:{s:s, s:{s:s}}}", "addr",
                                               "type", "unix", "data", "path",
                                               path),
                                    NULL);
}

int
qmp_nbd_server_stop (struct qmp_client *c)
{
  return qmp_client_execute (c, "nbd-server-stop", NULL, NULL);
}

int
qmp_block_export_del (struct qmp_client *c, const char *id)
{
  return execute_on_id (c, "block-export-del", id);
}

int
qmp_job_cancel (struct qmp_client *c, const char *id)
{
  return execute_on_id (c, "job-cancel", id);
}

int
qmp_job_get (const json_t *job, struct qmp_job *out)
{
  json_t *cur, *tot, *type, *error;

  memset (out, 0, sizeof *out);
  out->id = json_string_value (json_object_get (job, "id"));
  out->status = json_string_value (json_object_get (job, "status"));
  type = json_object_get (job, "type");
  error = json_object_get (job, "error");
  cur = json_object_get (job, "current-progress");
  tot = json_object_get (job, "total-progress");
  if (out->id == NULL || out->status == NULL
      || (type != NULL && !json_is_string (type))
      || (error != NULL && !json_is_string (error))
      || (cur != NULL && !json_is_integer (cur))
      || (tot != NULL && !json_is_integer (tot))) {
    set_error (-EPROTO, "qmp 'query-jobs': a job of the wrong shape");
    return -1;
  }
  out->type = json_string_value (type);
  out->error = json_string_value (error);
  out->current = cur ? json_integer_value (cur) : 0;
  out->total = tot ? json_integer_value (tot) : 0;
  return 0;
}

int
qmp_block_stream (struct qmp_client *c, const char *id, const char *node,
                  bool auto_finalize, bool auto_dismiss, int64_t speed)
{
  return qmp_client_execute_packed (
    c, "block-stream",
    json_pack ("{s:s, s:s, s:b, s:b, s:I}", "job-id", id, "device", node,
               "auto-finalize", auto_finalize, "auto-dismiss", auto_dismiss,
               "speed", (json_int_t) speed),
    NULL);
}

int
qmp_job_finalize (struct qmp_client *c, const char *id)
{
  return execute_on_id (c, "job-finalize", id);
}

int
qmp_job_dismiss (struct qmp_client *c, const char *id)
{
  return execute_on_id (c, "job-dismiss", id);
}

int
qmp_query_running (struct qmp_client *c, bool *running)
{
  json_t *r = NULL, *st;

  if (qmp_client_execute (c, "query-status", NULL, &r) == -1)
    return -1;
  st = json_object_get (r, "status");
  if (!json_is_string (st)) {
    json_decref (r);
    set_error (-EPROTO, "qmp 'query-status': the reply has no status");
    return -1;
  }
  *running = strcmp (json_string_value (st), "running") == 0;
  json_decref (r);
  return 0;
}

int
qmp_stop (struct qmp_client *c)
{
  return qmp_client_execute (c, "stop", NULL, NULL);
}

int
qmp_cont (struct qmp_client *c)
{
  return qmp_client_execute (c, "cont", NULL, NULL);
}

int
qmp_qom_get_string (struct qmp_client *c, const char *path,
                    const char *property, char **value)
{
  json_t *r = NULL;

  if (qmp_client_execute_packed (
        c, "qom-get",
        json_pack ("{s:s, s:s}", "path", path, "property", property), &r)
      == -1)
    return -1;
  if (!json_is_string (r)) {
    json_decref (r);
    set_error (-EPROTO, "qmp 'qom-get' %s %s: not a string", path, property);
    return -1;
  }
  *value = strdup (json_string_value (r));
  json_decref (r);
  if (*value == NULL) {
    set_error (ENOMEM, "strdup");
    return -1;
  }
  return 0;
}

int
qmp_qom_children (struct qmp_client *c, const char *path, const char *prefix,
                  json_t **names)
{
  json_t *r = NULL, *e, *out;
  size_t i;

  if (qmp_client_execute_packed (c, "qom-list",
                                 json_pack ("{s:s}", "path", path), &r)
      == -1)
    return -1;
  if (!json_is_array (r)) {
    json_decref (r);
    set_error (-EPROTO, "qmp 'qom-list' %s: not a list", path);
    return -1;
  }
  out = json_array ();
  if (out == NULL) {
    json_decref (r);
    set_error (ENOMEM, "qom-list");
    return -1;
  }
  json_array_foreach (r, i, e)
  {
    const char *name = json_string_value (json_object_get (e, "name"));
    const char *type = json_string_value (json_object_get (e, "type"));

    if (name == NULL || type == NULL || strncmp (type, "child<", 6) != 0
        || strncmp (name, prefix, strlen (prefix)) != 0)
      continue;
    if (json_array_append_new (out, json_string (name)) == -1) {
      json_decref (out);
      json_decref (r);
      set_error (ENOMEM, "qom-list");
      return -1;
    }
  }
  json_decref (r);
  *names = out;
  return 0;
}

int
qmp_object_add_secret (struct qmp_client *c, const char *id)
{
  return qmp_client_execute_packed (
    c, "object-add",
    json_pack ("{s:s, s:s, s:s}", "qom-type", "secret", "id", id, "data", "-"),
    NULL);
}

int
qmp_object_del (struct qmp_client *c, const char *id)
{
  return qmp_client_execute_packed (c, "object-del",
                                    json_pack ("{s:s}", "id", id), NULL);
}

int
qmp_qom_set_string (struct qmp_client *c, const char *path,
                    const char *property, const char *value)
{
  return qmp_client_execute_packed (c, "qom-set",
                                    json_pack ("{s:s, s:s, s:s}", "path", path,
                                               "property", property, "value",
                                               value),
                                    NULL);
}
