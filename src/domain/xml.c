/* SPDX-License-Identifier: Apache-2.0 */
/* xml.c: what knib reads in a libvirt domain XML, and its edits of it. */
#include <config.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/util.h"
#include "domain/domain.h"
#include "domain/internal.h"

#define AGENT_CHANNEL "org.qemu.guest_agent.0"

/* Never load a DTD or anything from the network; never expand entities. */
#define PARSE_FLAGS (XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)

static xmlDocPtr
parse (const char *xml, size_t len)
{
  xmlDocPtr doc;
  const xmlError *e;

  if (len > INT32_MAX) {
    set_error (EFBIG, "domain XML of %zu bytes", len);
    return NULL;
  }
  doc = xmlReadMemory (xml, (int) len, "domain.xml", NULL, PARSE_FLAGS);
  if (doc == NULL) {
    e = xmlGetLastError ();
    /* libxml2's messages end with a newline. */
    set_error (-EINVAL, "malformed domain XML: %.*s",
               e && e->message ? (int) strcspn (e->message, "\n") : 15,
               e && e->message ? e->message : "cannot parse it");
    return NULL;
  }
  if (xmlDocGetRootElement (doc) == NULL
      || !xmlStrEqual (xmlDocGetRootElement (doc)->name, BAD_CAST "domain")) {
    set_error (EINVAL, "not a domain XML: no <domain> element");
    xmlFreeDoc (doc);
    return NULL;
  }
  return doc;
}

static bool
is_element (xmlNodePtr n, const char *name)
{
  return n->type == XML_ELEMENT_NODE && xmlStrEqual (n->name, BAD_CAST name);
}

/* The first child element called name, or NULL. */
static xmlNodePtr
child (xmlNodePtr parent, const char *name)
{
  xmlNodePtr n;

  for (n = parent ? parent->children : NULL; n; n = n->next)
    if (is_element (n, name))
      return n;
  return NULL;
}

/* A copy of attribute name of n (NULL when n or it is missing); *oom
 * when the copy failed. */
static char *
attr (xmlNodePtr n, const char *name, bool *oom)
{
  xmlChar *v = n ? xmlGetProp (n, BAD_CAST name) : NULL;
  char *s;

  if (v == NULL)
    return NULL;
  s = strdup ((const char *) v);
  xmlFree (v);
  if (s == NULL)
    *oom = true;
  return s;
}

/* The text of n, trimmed, copied. */
static char *
text (xmlNodePtr n, bool *oom)
{
  xmlChar *v = n ? xmlNodeGetContent (n) : NULL;
  const char *p;
  size_t len;
  char *s;

  if (v == NULL)
    return NULL;
  for (p = (const char *) v; *p == ' ' || *p == '\n' || *p == '\t'; p++)
    ;
  len = strlen (p);
  while (len > 0
         && (p[len - 1] == ' ' || p[len - 1] == '\n' || p[len - 1] == '\t'))
    len--;
  s = strndup (p, len);
  xmlFree (v);
  if (s == NULL)
    *oom = true;
  return s;
}

void
domain_disk_release (struct domain_disk *d)
{
  free (d->target);
  free (d->alias);
  free (d->type);
  free (d->device);
  free (d->source);
  free (d->format);
  free (d->bus);
}

static int
parse_disk (xmlNodePtr n, struct domain_info *info)
{
  struct domain_disk d = { .readonly = child (n, "readonly") != NULL };
  xmlNodePtr src = child (n, "source");
  bool oom = false;

  d.target = attr (child (n, "target"), "dev", &oom);
  d.alias = attr (child (n, "alias"), "name", &oom);
  d.type = attr (n, "type", &oom);
  d.device = attr (n, "device", &oom);
  d.format = attr (child (n, "driver"), "type", &oom);
  d.bus = attr (child (n, "target"), "bus", &oom);
  {
    CLEANUP_FREE char *order = attr (child (n, "boot"), "order", &oom);
    int64_t v;

    if (order != NULL) {
      if (parse_int64 ("boot order", order, 1, 1000, &v) == 0)
        d.boot = (unsigned) v;
      else
        error_clear ();
    }
  }
  if (d.type && strcmp (d.type, "file") == 0)
    d.source = attr (src, "file", &oom);
  else if (d.type && strcmp (d.type, "block") == 0)
    d.source = attr (src, "dev", &oom);
  if (!oom && d.device == NULL && (d.device = strdup ("disk")) == NULL)
    oom = true;
  if (oom || d.target == NULL
      || domain_disk_vector_append (&info->disks, d) == -1) {
    if (!oom && d.target == NULL)
      set_error (EINVAL, "a <disk> has no <target dev=...>");
    else
      set_error (ENOMEM, "out of memory");
    domain_disk_release (&d);
    return -1;
  }
  return 0;
}

static int
parse_channel (xmlNodePtr n, struct domain_info *info)
{
  bool oom = false;
  char *name = attr (child (n, "target"), "name", &oom);

  if (name != NULL && strcmp (name, AGENT_CHANNEL) == 0) {
    info->agent = true;
    free (info->agent_path);
    info->agent_path = attr (child (n, "source"), "path", &oom);
  }
  free (name);
  if (oom) {
    set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

/* "unix:PATH,opt=..." whose PATH is a name directly in knib's socket
 * directory: PATH.  A path that leaves it ("DIR/../x", "DIR/a/b") or a
 * hidden name is not knib's. */
static char *
knib_socket_of (const char *value, const char *dir)
{
  size_t dirlen = strlen (dir);
  const char *p, *name;
  size_t len;

  if (strncmp (value, "unix:", 5) != 0)
    return NULL;
  p = value + 5;
  if (strncmp (p, dir, dirlen) != 0 || p[dirlen] != '/')
    return NULL;
  name = p + dirlen + 1;
  len = strcspn (name, ",");
  if (len == 0 || name[0] == '.' || memchr (name, '/', len) != NULL)
    return NULL;
  return strndup (p, dirlen + 1 + len);
}

static int
parse_commandline (xmlNodePtr cl, struct domain_info *info)
{
  CLEANUP_FREE char *dir = domain_qmp_dir ();
  bool oom = false, after_qmp = false;
  xmlNodePtr n;

  if (dir == NULL)
    return -1;
  for (n = cl->children; n && info->qmp == NULL; n = n->next) {
    CLEANUP_FREE char *v = NULL;

    if (!is_element (n, "arg"))
      continue;
    v = attr (n, "value", &oom);
    if (v == NULL)
      continue;
    if (after_qmp)
      info->qmp = knib_socket_of (v, dir);
    after_qmp = strcmp (v, "-qmp") == 0;
  }
  if (oom) {
    set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

/* "+64055:+64055" (or "user:group"): QEMU's user and group. */
static void
parse_dac_label (const char *label, struct domain_info *info)
{
  CLEANUP_FREE char *copy = strdup (label);
  char *group;
  int64_t uid, gid;

  if (copy == NULL || (group = strchr (copy, ':')) == NULL)
    return;
  *group++ = '\0';
  if (copy[0] == '+' && group[0] == '+') {
    if (parse_int64 ("uid", copy + 1, 0, INT32_MAX, &uid) == -1
        || parse_int64 ("gid", group + 1, 0, INT32_MAX, &gid) == -1) {
      error_clear ();
      return;
    }
  }
  else {
    struct passwd *pw = getpwnam (copy);
    struct group *gr = getgrnam (group);

    if (pw == NULL || gr == NULL)
      return;
    uid = pw->pw_uid;
    gid = gr->gr_gid;
  }
  info->dac_label = true;
  info->qemu_uid = (uid_t) uid;
  info->qemu_gid = (gid_t) gid;
}

static int
parse_seclabel (xmlNodePtr n, struct domain_info *info)
{
  bool oom = false;
  CLEANUP_FREE char *model = attr (n, "model", &oom);
  CLEANUP_FREE char *label = NULL;

  if (model == NULL || strcmp (model, "dac") != 0)
    return oom ? (set_error (ENOMEM, "out of memory"), -1) : 0;
  label = text (child (n, "label"), &oom);
  if (oom) {
    set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (label != NULL)
    parse_dac_label (label, info);
  return 0;
}

static int
parse_devices (xmlNodePtr devices, struct domain_info *info)
{
  xmlNodePtr n;

  for (n = devices ? devices->children : NULL; n; n = n->next) {
    if (is_element (n, "disk") && parse_disk (n, info) == -1)
      return -1;
    if (is_element (n, "channel") && parse_channel (n, info) == -1)
      return -1;
  }
  return 0;
}

/* A size in KiB from a number and its unit (libvirt's units). */
static uint64_t
kib_of (const char *value, const char *unit)
{
  static const struct {
    const char *unit;
    uint64_t bytes;
  } units[] = {
    { "b", 1 },
    { "bytes", 1 },
    { "KB", 1000 },
    { "k", 1024 },
    { "KiB", 1024 },
    { "MB", 1000000 },
    { "M", 1048576 },
    { "MiB", 1048576 },
    { "GB", 1000000000 },
    { "G", 1073741824 },
    { "GiB", 1073741824 },
    { "TB", 1000000000000 },
    { "T", 1099511627776 },
    { "TiB", 1099511627776 },
  };
  int64_t n;

  if (value == NULL
      || parse_int64 ("memory", value, 1, INT64_MAX / 1024, &n) == -1) {
    error_clear ();
    return 0;
  }
  if (unit == NULL)
    return (uint64_t) n; /* KiB by default */
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
    if (strcmp (units[i].unit, unit) == 0)
      return (uint64_t) n / 1024 * units[i].bytes
             + (uint64_t) n % 1024 * units[i].bytes / 1024;
  return 0;
}

/* <cpu mode match><model fallback>NAME</model><feature policy name/> */
static int
parse_cpu (xmlNodePtr cpu, struct domain_info *info)
{
  bool oom = false;
  xmlNodePtr n;

  info->cpu_mode = attr (cpu, "mode", &oom);
  info->cpu_model = text (child (cpu, "model"), &oom);
  info->cpu_fallback = attr (child (cpu, "model"), "fallback", &oom);
  for (n = cpu ? cpu->children : NULL; n != NULL && !oom; n = n->next) {
    struct domain_cpu_feature f;

    if (!is_element (n, "feature"))
      continue;
    f.name = attr (n, "name", &oom);
    f.policy = attr (n, "policy", &oom);
    if (f.name == NULL
        || domain_cpu_feature_vector_append (&info->cpu_features, f) == -1) {
      oom |= f.name != NULL;
      free (f.name);
      free (f.policy);
    }
  }
  if (oom) {
    set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

static int
parse_hardware (xmlNodePtr root, struct domain_info *info)
{
  xmlNodePtr os = child (root, "os");
  xmlNodePtr loader = child (os, "loader");
  bool oom = false;
  CLEANUP_FREE char *secure = attr (loader, "secure", &oom);
  CLEANUP_FREE char *mem = text (child (root, "memory"), &oom);
  CLEANUP_FREE char *unit = attr (child (root, "memory"), "unit", &oom);
  CLEANUP_FREE char *vcpu = text (child (root, "vcpu"), &oom);
  int64_t n;

  info->machine = attr (child (os, "type"), "machine", &oom);
  info->firmware = attr (os, "firmware", &oom);
  info->loader = text (loader, &oom);
  info->loader_type = attr (loader, "type", &oom);
  info->loader_secure = secure != NULL && strcmp (secure, "yes") == 0;
  info->nvram_template = attr (child (os, "nvram"), "template", &oom);
  info->kernel = text (child (os, "kernel"), &oom);
  info->initrd = text (child (os, "initrd"), &oom);
  info->cmdline = text (child (os, "cmdline"), &oom);
  if (oom) {
    set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (parse_cpu (child (root, "cpu"), info) == -1)
    return -1;
  info->memory_kib = kib_of (mem, unit);
  if (vcpu != NULL) {
    if (parse_int64 ("vcpu", vcpu, 1, 4096, &n) == 0)
      info->vcpus = (unsigned) n;
    else
      error_clear ();
  }
  return 0;
}

static int
parse_root (xmlNodePtr root, struct domain_info *info)
{
  bool oom = false;
  xmlNodePtr n;

  info->name = text (child (root, "name"), &oom);
  info->uuid = text (child (root, "uuid"), &oom);
  if (oom) {
    set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (info->name == NULL || info->name[0] == '\0') {
    set_error (EINVAL, "the domain XML has no <name>");
    return -1;
  }
  if (parse_devices (child (root, "devices"), info) == -1
      || parse_hardware (root, info) == -1)
    return -1;
  for (n = root->children; n; n = n->next) {
    if (n->type != XML_ELEMENT_NODE)
      continue;
    if (is_element (n, "seclabel") && parse_seclabel (n, info) == -1)
      return -1;
    if (is_element (n, "commandline") && n->ns
        && xmlStrEqual (n->ns->href, BAD_CAST DOMAIN_QEMU_NS)
        && parse_commandline (n, info) == -1)
      return -1;
  }
  return 0;
}

int
domain_info_parse (const char *xml, size_t len, struct domain_info *info)
{
  xmlDocPtr doc;
  int r;

  memset (info, 0, sizeof *info);
  doc = parse (xml, len);
  if (doc == NULL)
    return -1;
  r = parse_root (xmlDocGetRootElement (doc), info);
  xmlFreeDoc (doc);
  if (r == -1)
    domain_info_release (info);
  return r;
}

void
domain_info_release (struct domain_info *info)
{
  size_t i;

  for (i = 0; i < info->disks.len; i++)
    domain_disk_release (&info->disks.ptr[i]);
  domain_disk_vector_reset (&info->disks);
  free (info->name);
  free (info->uuid);
  free (info->agent_path);
  free (info->qmp);
  free (info->machine);
  free (info->firmware);
  free (info->loader);
  free (info->loader_type);
  free (info->nvram_template);
  free (info->kernel);
  free (info->initrd);
  free (info->cmdline);
  free (info->cpu_mode);
  free (info->cpu_model);
  free (info->cpu_fallback);
  for (i = 0; i < info->cpu_features.len; i++) {
    free (info->cpu_features.ptr[i].name);
    free (info->cpu_features.ptr[i].policy);
  }
  domain_cpu_feature_vector_reset (&info->cpu_features);
  memset (info, 0, sizeof *info);
}

const struct domain_disk *
domain_info_find_alias (const struct domain_info *info, const char *alias)
{
  size_t i;

  for (i = 0; i < info->disks.len; i++)
    if (info->disks.ptr[i].alias
        && strcmp (info->disks.ptr[i].alias, alias) == 0)
      return &info->disks.ptr[i];
  return NULL;
}

/* ---- The edit: knib's -qmp in <qemu:commandline> ---- */

static xmlNodePtr
find_commandline (xmlNodePtr root)
{
  xmlNodePtr n;

  for (n = root->children; n; n = n->next)
    if (is_element (n, "commandline") && n->ns
        && xmlStrEqual (n->ns->href, BAD_CAST DOMAIN_QEMU_NS))
      return n;
  return NULL;
}

/* Whether n is <qemu:arg value=v>. */
static bool
is_arg (xmlNodePtr n, const char *v, bool prefix)
{
  xmlChar *value;
  bool r;

  if (n == NULL || !is_element (n, "arg"))
    return false;
  value = xmlGetProp (n, BAD_CAST "value");
  if (value == NULL)
    return false;
  r = prefix ? strncmp ((const char *) value, v, strlen (v)) == 0
             : strcmp ((const char *) value, v) == 0;
  xmlFree (value);
  return r;
}

static xmlNodePtr
next_element (xmlNodePtr n)
{
  for (n = n ? n->next : NULL; n && n->type != XML_ELEMENT_NODE; n = n->next)
    ;
  return n;
}

/* The "-qmp" argument followed by "unix:SOCKET[,...]", or NULL. */
static xmlNodePtr
find_qmp_arg (xmlNodePtr cl, const char *socket)
{
  CLEANUP_FREE char *bare = NULL;
  CLEANUP_FREE char *with_opts = NULL;
  xmlNodePtr n;

  if (asprintf (&bare, "unix:%s", socket) == -1)
    bare = NULL;
  if (asprintf (&with_opts, "unix:%s,", socket) == -1)
    with_opts = NULL;
  if (bare == NULL || with_opts == NULL)
    return NULL;
  for (n = cl ? cl->children : NULL; n; n = n->next) {
    xmlNodePtr v = next_element (n);

    if (is_arg (n, "-qmp", false) && v
        && (is_arg (v, with_opts, true) || is_arg (v, bare, false)))
      return n;
  }
  return NULL;
}

static void
remove_node (xmlNodePtr n)
{
  xmlUnlinkNode (n);
  xmlFreeNode (n);
}

static int
add_qmp (xmlNodePtr root, xmlNodePtr cl, const char *socket)
{
  CLEANUP_FREE char *value = NULL;
  xmlNsPtr ns = xmlSearchNsByHref (root->doc, root, BAD_CAST DOMAIN_QEMU_NS);
  xmlNodePtr a, b;

  if (ns == NULL)
    ns = xmlNewNs (root, BAD_CAST DOMAIN_QEMU_NS, BAD_CAST "qemu");
  if (ns == NULL)
    goto nomem;
  if (cl == NULL
      && (cl = xmlNewChild (root, ns, BAD_CAST "commandline", NULL)) == NULL)
    goto nomem;
  if (asprintf (&value, "unix:%s,server=on,wait=off", socket) == -1) {
    value = NULL;
    goto nomem;
  }
  a = xmlNewChild (cl, ns, BAD_CAST "arg", NULL);
  b = xmlNewChild (cl, ns, BAD_CAST "arg", NULL);
  if (a == NULL || b == NULL
      || xmlSetProp (a, BAD_CAST "value", BAD_CAST "-qmp") == NULL
      || xmlSetProp (b, BAD_CAST "value", BAD_CAST value) == NULL)
    goto nomem;
  return 0;
nomem:
  set_error (ENOMEM, "out of memory");
  return -1;
}

static void
remove_qmp (xmlNodePtr cl, xmlNodePtr arg)
{
  xmlNodePtr n;

  remove_node (next_element (arg));
  remove_node (arg);
  for (n = cl->children; n; n = n->next)
    if (n->type == XML_ELEMENT_NODE)
      return;
  remove_node (cl);
}

/* The document as text in *out (a new string). */
static int
dump_doc (xmlDocPtr doc, char **out)
{
  xmlChar *buf = NULL;
  int size = 0;

  xmlDocDumpFormatMemory (doc, &buf, &size, 1);
  *out = buf ? strndup ((const char *) buf, size) : NULL;
  xmlFree (buf);
  if (*out == NULL) {
    set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

int
domain_xml_set_qmp (const char *xml, size_t len, const char *socket,
                    bool enable, char **out)
{
  xmlDocPtr doc = parse (xml, len);
  xmlNodePtr root, cl, arg;
  int r = -1;

  *out = NULL;
  if (doc == NULL)
    return -1;
  root = xmlDocGetRootElement (doc);
  cl = find_commandline (root);
  arg = find_qmp_arg (cl, socket);
  if (enable == (arg != NULL)) {
    r = 0; /* nothing to change */
    goto out;
  }
  if (enable) {
    if (add_qmp (root, cl, socket) == -1)
      goto out;
  }
  else
    remove_qmp (cl, arg);
  r = dump_doc (doc, out);
out:
  xmlFreeDoc (doc);
  return r;
}

/* Drop every <backingStore> under node (recursively, they nest). */
static bool
drop_backing (xmlNodePtr node)
{
  bool changed = false;

  for (xmlNodePtr c = node->children, next; c != NULL; c = next) {
    next = c->next;
    if (c->type != XML_ELEMENT_NODE)
      continue;
    if (xmlStrcmp (c->name, BAD_CAST "backingStore") == 0) {
      xmlUnlinkNode (c);
      xmlFreeNode (c);
      changed = true;
    }
    else if (xmlStrcmp (c->name, BAD_CAST "devices") == 0
             || xmlStrcmp (c->name, BAD_CAST "disk") == 0)
      changed = drop_backing (c) || changed;
  }
  return changed;
}

int
domain_xml_drop_backing (const char *xml, size_t len, char **out)
{
  xmlDocPtr doc = parse (xml, len);
  int r = -1;

  *out = NULL;
  if (doc == NULL)
    return -1;
  if (!drop_backing (xmlDocGetRootElement (doc))) {
    r = 0;
    goto out;
  }
  r = dump_doc (doc, out);
out:
  xmlFreeDoc (doc);
  return r;
}

/* The <disk> whose <target dev> is dev, under <devices>. */
static xmlNodePtr
find_disk_by_target (xmlNodePtr root, const char *dev)
{
  xmlNodePtr devices = child (root, "devices");

  for (xmlNodePtr d = devices ? devices->children : NULL; d; d = d->next) {
    xmlNodePtr t = is_element (d, "disk") ? child (d, "target") : NULL;
    xmlChar *v = t ? xmlGetProp (t, BAD_CAST "dev") : NULL;
    bool match = v != NULL && xmlStrEqual (v, BAD_CAST dev);

    xmlFree (v);
    if (match)
      return d;
  }
  return NULL;
}

int
domain_xml_set_disk_file (const char *xml, size_t len, const char *dev,
                          const char *file, char **out)
{
  xmlDocPtr doc = parse (xml, len);
  xmlNodePtr disk, source;
  int r = -1;

  *out = NULL;
  if (doc == NULL)
    return -1;
  disk = find_disk_by_target (xmlDocGetRootElement (doc), dev);
  source = disk ? child (disk, "source") : NULL;
  if (source == NULL) {
    set_error (ENOENT, "the domain has no disk '%s' with a source file", dev);
    goto out;
  }
  if (xmlSetProp (source, BAD_CAST "file", BAD_CAST file) == NULL) {
    set_error (ENOMEM, "out of memory");
    goto out;
  }
  (void) drop_backing (disk);
  r = dump_doc (doc, out);
out:
  xmlFreeDoc (doc);
  return r;
}

/* ---- A new domain from a stored definition ---- */

/* Set (or replace) the text of root's child element name. */
static int
set_child_text (xmlNodePtr root, const char *name, const char *value)
{
  xmlNodePtr n = child (root, name);

  if (n == NULL)
    n = xmlNewChild (root, NULL, BAD_CAST name, NULL);
  if (n == NULL)
    return -1;
  xmlNodeSetContent (n, BAD_CAST value);
  return 0;
}

static const struct domain_clone_disk *
clone_disk_of (xmlNodePtr disk, const struct domain_clone_disk *disks, size_t n,
               bool *oom)
{
  xmlNodePtr t = child (disk, "target");
  CLEANUP_FREE char *dev = t ? attr (t, "dev", oom) : NULL;

  for (size_t i = 0; dev != NULL && i < n; i++)
    if (strcmp (disks[i].target, dev) == 0)
      return &disks[i];
  return NULL;
}

/* The disk reads the new image: type file, driver qcow2, one source. */
static int
point_disk (xmlNodePtr disk, const char *path)
{
  xmlNodePtr d = child (disk, "driver"), s, b;

  xmlSetProp (disk, BAD_CAST "type", BAD_CAST "file");
  if (d == NULL && (d = xmlNewChild (disk, NULL, BAD_CAST "driver", NULL)))
    xmlSetProp (d, BAD_CAST "name", BAD_CAST "qemu");
  if (d == NULL)
    return -1;
  xmlSetProp (d, BAD_CAST "type", BAD_CAST "qcow2");
  while ((s = child (disk, "source")) != NULL)
    remove_node (s);
  while ((b = child (disk, "backingStore")) != NULL)
    remove_node (b);
  s = xmlNewChild (disk, NULL, BAD_CAST "source", NULL);
  if (s == NULL)
    return -1;
  xmlSetProp (s, BAD_CAST "file", BAD_CAST path);
  return 0;
}

/* Disks: restored ones read their new image; other disks that hold
 * an image of the original VM go (a CD-ROM or floppy stays). */
static int
clone_disks (xmlNodePtr devices, const struct domain_clone_disk *disks,
             size_t n, size_t *dropped)
{
  xmlNodePtr next;
  bool oom = false;

  *dropped = 0;
  for (xmlNodePtr d = devices ? devices->children : NULL; d; d = next) {
    const struct domain_clone_disk *cd;
    CLEANUP_FREE char *device = NULL;

    next = d->next;
    if (!is_element (d, "disk"))
      continue;
    cd = clone_disk_of (d, disks, n, &oom);
    device = attr (d, "device", &oom);
    if (oom)
      return -1;
    if (cd != NULL) {
      if (point_disk (d, cd->path) == -1)
        return -1;
    }
    else if (device == NULL || strcmp (device, "disk") == 0
             || strcmp (device, "lun") == 0) {
      remove_node (d);
      (*dropped)++;
    }
  }
  return 0;
}

/* New MAC addresses: libvirt makes them when there are none. */
static void
drop_macs (xmlNodePtr devices)
{
  for (xmlNodePtr i = devices ? devices->children : NULL; i; i = i->next) {
    xmlNodePtr mac;

    if (is_element (i, "interface") && (mac = child (i, "mac")) != NULL)
      remove_node (mac);
  }
}

int
domain_xml_clone (const char *xml, size_t len, const char *name,
                  const char *uuid, const struct domain_clone_disk *disks,
                  size_t n, size_t *dropped, char **out)
{
  xmlDocPtr doc = parse (xml, len);
  xmlNodePtr root, devices;
  xmlChar *buf = NULL;
  int size = 0, r = -1;

  *out = NULL;
  if (doc == NULL)
    return -1;
  root = xmlDocGetRootElement (doc);
  if (root == NULL || !is_element (root, "domain")) {
    set_error (-EINVAL, "not a domain XML");
    goto out;
  }
  devices = child (root, "devices");
  /* A definition as it ran holds what libvirt chose: let it choose anew. */
  xmlUnsetProp (root, BAD_CAST "id");
  if (set_child_text (root, "name", name) == -1
      || set_child_text (root, "uuid", uuid) == -1
      || clone_disks (devices, disks, n, dropped) == -1)
    goto nomem;
  drop_macs (devices);
  xmlDocDumpFormatMemory (doc, &buf, &size, 1);
  if (buf == NULL || (*out = strndup ((const char *) buf, size)) == NULL)
    goto nomem;
  r = 0;
  goto out;
nomem:
  set_error (ENOMEM, "out of memory");
out:
  xmlFree (buf);
  xmlFreeDoc (doc);
  return r;
}
