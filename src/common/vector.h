/* SPDX-License-Identifier: Apache-2.0 */
/* vector.h: typed growable arrays, so no module hand-rolls realloc loops. */
#ifndef KNIB_COMMON_VECTOR_H
#define KNIB_COMMON_VECTOR_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Grow *ptr (of elements of size elem) so it holds at least n more.
 * Returns 0, or -1 with errno = ENOMEM and the vector untouched. */
int vector_reserve (void **ptr, size_t *cap, size_t len, size_t n, size_t elem);

#define DEFINE_VECTOR_TYPE(name, type)                                         \
  typedef struct {                                                             \
    type *ptr;                                                                 \
    size_t len;                                                                \
    size_t cap;                                                                \
  } name;                                                                      \
                                                                               \
  static inline                                                                \
    __attribute__ ((unused, warn_unused_result)) int name##_reserve (name *v,  \
                                                                     size_t n) \
  {                                                                            \
    return vector_reserve ((void **) &v->ptr, &v->cap, v->len, n,              \
                           sizeof (type));                                     \
  }                                                                            \
                                                                               \
  static inline                                                                \
    __attribute__ ((unused, warn_unused_result)) int name##_append (name *v,   \
                                                                    type elem) \
  {                                                                            \
    if (name##_reserve (v, 1) == -1)                                           \
      return -1;                                                               \
    v->ptr[v->len++] = elem;                                                   \
    return 0;                                                                  \
  }                                                                            \
                                                                               \
  static inline                                                                \
    __attribute__ ((unused)) void name##_remove (name *v, size_t i)            \
  {                                                                            \
    memmove (&v->ptr[i], &v->ptr[i + 1], (v->len - i - 1) * sizeof (type));    \
    v->len--;                                                                  \
  }                                                                            \
                                                                               \
  static inline __attribute__ ((unused)) void name##_reset (name *v)           \
  {                                                                            \
    free (v->ptr);                                                             \
    v->ptr = NULL;                                                             \
    v->len = v->cap = 0;                                                       \
  }

#define empty_vector                                                           \
  {                                                                            \
    .ptr = NULL, .len = 0, .cap = 0                                            \
  }

#endif
