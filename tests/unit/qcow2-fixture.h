/* SPDX-License-Identifier: Apache-2.0 */
/* qcow2-fixture.h: what the qcow2 tests share: running qemu-img, temporary
 * paths, generated data.  Failures end the test through cmocka. */
#ifndef KNIB_TESTS_QCOW2_FIXTURE_H
#define KNIB_TESTS_QCOW2_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The test's temporary directory (set by its setup), and whether
 * qemu-img could be run there. */
extern char tmpdir[256];
extern bool have_qemu_img;

/* Run argv (no shell); its stdout and stderr go to *output (may be NULL).
 * Returns the exit status, or -1 when it did not exit. */
int run (const char *const argv[], char **output);

/* Run argv; anything but exit status 0 fails the test with its output. */
void run_ok (const char *const argv[]);

/* Skip the test when qemu-img is missing. */
void need_qemu_img (void);

/* qemu-img check of a qcow2 image is clean. */
void check_clean (const char *path);

/* qemu-img compare: the qcow2 image reads as the raw file. */
void compare_with (const char *image, const char *raw);

/* buf = tmpdir/name. */
void tmp_path (char *buf, size_t size, const char *name);

uint64_t xorshift (uint64_t *s);

/* Incompressible bytes depending on seed. */
void fill_random (unsigned char *buf, size_t len, uint64_t seed);

/* Text that compresses well and differs with seed. */
void fill_text (unsigned char *buf, size_t len, uint64_t seed);

/* pwrite all of buf at off, or fail the test. */
void pwrite_full (int fd, const void *buf, size_t len, uint64_t off);

#endif
