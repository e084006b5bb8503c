/* Wire-level string checks; see proto_check.h. */
#include <stdio.h>


#include <kiln/util/proto_check.h>

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret)
{
        uint64_t v = 0;
        for (int shift = 0; shift < 64 && *p < end; shift += 7) {
                uint8_t b = *(*p)++;
                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *ret = v;
                        return true;
                }
        }
        return false;
}

static int check(const ProtobufCMessageDescriptor *desc, const uint8_t *p, const uint8_t *end,
                 const char *prefix, struct kiln_error **err)
{
        /* Occurrence counters for the repeated-field index in messages. */
        unsigned counts[64] = {0};
        while (p < end) {
                uint64_t key, len;
                if (!read_varint(&p, end, &key))
                        return 0;
                uint32_t number = (uint32_t)(key >> 3);
                unsigned wt = key & 7;
                switch (wt) {
                case 0:
                        if (!read_varint(&p, end, &len))
                                return 0;
                        continue;
                case 1:
                        p += 8;
                        continue;
                case 5:
                        p += 4;
                        continue;
                case 2:
                        break;
                default:
                        return 0; /* malformed or groups: left to the unpacker */
                }
                if (!read_varint(&p, end, &len) || len > (uint64_t)(end - p))
                        return 0;
                const ProtobufCFieldDescriptor *f =
                        protobuf_c_message_descriptor_get_field(desc, number);
                const uint8_t *body = p;
                p += len;
                if (!f)
                        continue;
                unsigned idx = f - desc->fields < 64 ? counts[f - desc->fields]++ : 0;
                char path[256];
                if (f->label == PROTOBUF_C_LABEL_REPEATED)
                        snprintf(path, sizeof(path), "%s%s[%u]", prefix, f->name, idx);
                else
                        snprintf(path, sizeof(path), "%s%s", prefix, f->name);
                if (f->type == PROTOBUF_C_TYPE_STRING) {
                        if (memchr(body, 0, len))
                                return kiln_error_set(err, EINVAL, "field %s: contains a NUL byte",
                                                      path);
                        if (!kiln_utf8_valid(body, len))
                                return kiln_error_set(err, EINVAL,
                                                      "field %s: is not valid UTF-8", path);
                } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                        char sub[260];
                        snprintf(sub, sizeof(sub), "%s.", path);
                        int r = check(f->descriptor, body, body + len, sub, err);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

int kiln_proto_check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                             size_t len, struct kiln_error **err)
{
        if (len == 0)
                return 0; /* an empty message has no strings (data may be NULL) */
        return check(desc, data, data + len, "", err);
}
