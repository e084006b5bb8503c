/* Snix's answer to DoBuild (snix.build.v1.BuildResponse): for each output,
 * its Entry (the bytes of a tvix Node) and the indexes of the refscan
 * needles found in it. Written by hand: protoc-c would generate a second
 * copy of every castore type for three fields. */
#include <kiln/build/build.h>

/* A length-delimited field: its tag, the length, the bytes. */
static void put_bytes(struct kiln_buf *out, unsigned field, const void *p, size_t n)
{
        kiln_buf_append_varint(out, (uint64_t)field << 3 | 2);
        kiln_buf_append_varint(out, n);
        kiln_buf_append(out, p, n);
}

void kiln_build_encode_snix(const struct kiln_build *b, struct kiln_buf *out)
{
        struct kiln_buf entry = KILN_BUF_INIT, needles = KILN_BUF_INIT, output = KILN_BUF_INIT;
        for (size_t i = 0; i < b->n_outputs; i++) {
                const struct kiln_build_output *o = &b->outputs[i];
                kiln_buf_clear(&entry);
                kiln_buf_clear(&needles);
                kiln_buf_clear(&output);
                kiln_node_encode(&o->node, &entry);
                put_bytes(&output, 1, entry.data, entry.len); /* Output.output */
                for (size_t k = 0; k < o->n_needles; k++)
                        kiln_buf_append_varint(&needles, o->needles[k]);
                if (needles.len) /* Output.needles, packed as proto3 writes it */
                        put_bytes(&output, 2, needles.data, needles.len);
                put_bytes(out, 1, output.data, output.len); /* BuildResponse.outputs */
        }
        kiln_buf_done(&entry);
        kiln_buf_done(&needles);
        kiln_buf_done(&output);
}
