/* An independent definition of the canonical protobuf encoding (what prost
 * and kiln's encoders write), driven by a schema: fields in field-number
 * order, each repeated field's entries together, no scalar field holding its
 * default (0, false, empty), varints and lengths in their shortest form,
 * repeated varints packed, the right wire type, no unknown field, submessages
 * canonical in turn. A oneof member and a set message field are written even
 * when empty. Used by the targets for
 * decode ∘ encode = identity on canonical inputs, and to check that the
 * encoders' output is canonical by this definition. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum canon_type {
        CANON_VARINT,
        CANON_BOOL,
        CANON_BYTES, /* and strings */
        CANON_MSG,
        CANON_PACKED, /* repeated varints, packed (proto3's default) */
};

/* When a field is written. */
enum canon_card {
        CANON_SINGLE,   /* a scalar: when not the default */
        CANON_REPEATED, /* every entry, even an empty one, entries together */
        CANON_PRESENCE, /* a message field with presence: when set, even empty */
        CANON_REQUIRED, /* a message field the encoder always writes */
};

struct canon_field;
struct canon_msg {
        const struct canon_field *fields; /* ascending numbers, at most 16 */
        size_t n;
        bool oneof; /* the fields are one oneof: exactly one is written, even empty */
};
struct canon_field {
        uint32_t num;
        enum canon_type type;
        enum canon_card card;
        const struct canon_msg *sub; /* CANON_MSG */
};

/* A shortest-form varint at p[*i..n); false if malformed or padded. */
static inline bool canon_varint(const uint8_t *p, size_t n, size_t *i, uint64_t *ret)
{
        uint64_t v = 0;
        for (unsigned shift = 0; shift < 64 && *i < n; shift += 7) {
                uint8_t b = p[(*i)++];
                if (shift == 63 && b > 1)
                        return false;
                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        if (b == 0 && shift > 0)
                                return false; /* padded */
                        *ret = v;
                        return true;
                }
        }
        return false;
}

static inline bool canon_check(const struct canon_msg *m, const uint8_t *p, size_t n)
{
        size_t i = 0, fi = 0;
        unsigned seen = 0; /* bit per field index */
        uint32_t last = 0;
        while (i < n) {
                uint64_t key, v;
                if (!canon_varint(p, n, &i, &key) || key >> 3 > UINT32_MAX)
                        return false;
                uint32_t num = (uint32_t)(key >> 3), wt = key & 7;
                if (num < last || (num == last && m->fields[fi].card != CANON_REPEATED))
                        return false;
                if (m->oneof && seen && num != last)
                        return false;
                while (fi < m->n && m->fields[fi].num < num)
                        fi++;
                if (fi == m->n || m->fields[fi].num != num)
                        return false; /* unknown */
                const struct canon_field *f = &m->fields[fi];
                last = num;
                seen |= 1u << fi;
                /* Written even when empty: entries, set messages, oneof members. */
                bool always = f->card != CANON_SINGLE || m->oneof;
                if (f->type == CANON_VARINT || f->type == CANON_BOOL) {
                        if (wt != 0 || !canon_varint(p, n, &i, &v) || (v == 0 && !always) ||
                            (f->type == CANON_BOOL && v > 1))
                                return false;
                        continue;
                }
                if (wt != 2 || !canon_varint(p, n, &i, &v) || v > n - i)
                        return false;
                size_t end = i + (size_t)v;
                if ((f->type == CANON_BYTES && v == 0 && !always) ||
                    (f->type == CANON_PACKED && v == 0) ||
                    (f->type == CANON_MSG && !canon_check(f->sub, p + i, (size_t)v)))
                        return false;
                if (f->type == CANON_PACKED) /* one field (card single), shortest varints */
                        while (i < end)
                                if (!canon_varint(p, end, &i, &v))
                                        return false;
                i = end;
        }
        for (size_t k = 0; k < m->n; k++)
                if (m->fields[k].card == CANON_REQUIRED && !(seen & 1u << k))
                        return false;
        return !m->oneof || seen;
}

/* How many times top-level field num occurs in a message canon_check()
 * accepted (only varint and length-delimited fields occur). */
static inline size_t canon_count(const uint8_t *p, size_t n, uint32_t num)
{
        size_t i = 0, count = 0;
        uint64_t key, v;
        while (i < n && canon_varint(p, n, &i, &key) && canon_varint(p, n, &i, &v)) {
                count += key >> 3 == num;
                if ((key & 7) == 2)
                        i += (size_t)v;
        }
        return count;
}

/* tvix.castore.v1 */
static const struct canon_field canon_dirnode_f[] = {{1, CANON_BYTES, CANON_SINGLE, NULL},
                                                     {2, CANON_BYTES, CANON_SINGLE, NULL},
                                                     {3, CANON_VARINT, CANON_SINGLE, NULL}};
static const struct canon_msg canon_dirnode = {canon_dirnode_f, 3, false};
static const struct canon_field canon_filenode_f[] = {{1, CANON_BYTES, CANON_SINGLE, NULL},
                                                      {2, CANON_BYTES, CANON_SINGLE, NULL},
                                                      {3, CANON_VARINT, CANON_SINGLE, NULL},
                                                      {4, CANON_BOOL, CANON_SINGLE, NULL}};
static const struct canon_msg canon_filenode = {canon_filenode_f, 4, false};
static const struct canon_field canon_linknode_f[] = {{1, CANON_BYTES, CANON_SINGLE, NULL},
                                                      {2, CANON_BYTES, CANON_SINGLE, NULL}};
static const struct canon_msg canon_linknode = {canon_linknode_f, 2, false};
static const struct canon_field canon_directory_f[] = {
    {1, CANON_MSG, CANON_REPEATED, &canon_dirnode},
    {2, CANON_MSG, CANON_REPEATED, &canon_filenode},
    {3, CANON_MSG, CANON_REPEATED, &canon_linknode}};
static const struct canon_msg canon_directory = {canon_directory_f, 3, false};
/* Node: the three as one oneof. */
static const struct canon_field canon_node_f[] = {{1, CANON_MSG, CANON_SINGLE, &canon_dirnode},
                                                  {2, CANON_MSG, CANON_SINGLE, &canon_filenode},
                                                  {3, CANON_MSG, CANON_SINGLE, &canon_linknode}};
static const struct canon_msg canon_node = {canon_node_f, 3, true};

/* tvix.build.v1 */
static const struct canon_field canon_envvar_f[] = {{1, CANON_BYTES, CANON_SINGLE, NULL},
                                                    {2, CANON_BYTES, CANON_SINGLE, NULL}};
static const struct canon_msg canon_envvar = {canon_envvar_f, 2, false};
static const struct canon_field canon_constraints_f[] = {{1, CANON_BYTES, CANON_SINGLE, NULL},
                                                         {2, CANON_VARINT, CANON_SINGLE, NULL},
                                                         {3, CANON_BYTES, CANON_REPEATED, NULL},
                                                         {4, CANON_BOOL, CANON_SINGLE, NULL},
                                                         {5, CANON_BOOL, CANON_SINGLE, NULL}};
static const struct canon_msg canon_constraints = {canon_constraints_f, 5, false};
static const struct canon_field canon_addfile_f[] = {{1, CANON_BYTES, CANON_SINGLE, NULL},
                                                     {2, CANON_BYTES, CANON_SINGLE, NULL}};
static const struct canon_msg canon_addfile = {canon_addfile_f, 2, false};
static const struct canon_field canon_request_f[] = {
    {1, CANON_MSG, CANON_REPEATED, &canon_node},
    {2, CANON_BYTES, CANON_REPEATED, NULL},
    {3, CANON_BYTES, CANON_SINGLE, NULL},
    {4, CANON_BYTES, CANON_REPEATED, NULL},
    {5, CANON_BYTES, CANON_SINGLE, NULL},
    {6, CANON_BYTES, CANON_REPEATED, NULL},
    {7, CANON_MSG, CANON_REPEATED, &canon_envvar},
    {8, CANON_MSG, CANON_PRESENCE, &canon_constraints},
    {9, CANON_MSG, CANON_REPEATED, &canon_addfile},
    {10, CANON_BYTES, CANON_REPEATED, NULL}};
static const struct canon_msg canon_request = {canon_request_f, 10, false};
static const struct canon_field canon_needles_f[] = {{1, CANON_PACKED, CANON_SINGLE, NULL}};
static const struct canon_msg canon_needles = {canon_needles_f, 1, false};
/* kiln's Build has no "unset" request: its encoder always writes one. */
static const struct canon_field canon_build_f[] = {{1, CANON_MSG, CANON_REQUIRED, &canon_request},
                                                   {2, CANON_MSG, CANON_REPEATED, &canon_node},
                                                   {3, CANON_MSG, CANON_REPEATED, &canon_needles}};
static const struct canon_msg canon_build = {canon_build_f, 3, false};
