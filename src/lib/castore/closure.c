/* Closure validation: checks that a stream of Directories forms
 * one connected DAG, in leaves-to-root (upload) or root-to-leaves (download)
 * order, with every DirectoryNode.size matching the size of the Directory it
 * points to, then hands the Directories out again in either order.
 *
 * The graph is an array of nodes indexed through a digest map, so each add
 * costs O(entries) and finish and drain are linear: closures of 100k
 * Directories and more are fine. Traversals are iterative, since a closure
 * may be a chain as deep as it is long.
 *
 * An edge parent → child is checked as soon as both ends are present. In
 * leaves-to-root order that is when the parent arrives; in root-to-leaves
 * order the parent comes first, so its edge waits in the child's list of
 * pending edges until the child arrives. A failed add leaves the closure as
 * it was. Not thread-safe: one user at a time. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>

#include <kiln/castore/closure.h>
#include <kiln/castore/digest_map.h>

#define NO_EDGE SIZE_MAX

struct closure_node {
        struct kiln_digest digest;
        struct kiln_directory *dir; /* NULL while only referenced */
        uint64_t size;              /* kiln_directory_size(dir), once dir is set */
        size_t pending;             /* first pending incoming edge, or NO_EDGE */
        bool has_parent;
};

/* An edge from a present parent to a child not yet received. */
struct closure_edge {
        size_t parent; /* node index */
        size_t entry;  /* index of the DirectoryNode in the parent's Directory */
        size_t next;   /* next pending edge of the same child, or NO_EDGE */
};

struct kiln_closure {
        enum kiln_closure_order order;
        struct closure_node *nodes;
        size_t n_nodes, cap_nodes;
        struct kiln_digest_map index; /* digest -> (void *)(node index + 1) */
        struct closure_edge *edges;
        size_t n_edges, cap_edges;
        size_t n_added;
        bool finished;
        size_t root;
        struct kiln_buf scratch;
        /* drain output, owned by the closure */
        const struct kiln_directory **out_dirs;
        struct kiln_digest *out_digests;
};

static size_t node_lookup(const struct kiln_closure *c, const struct kiln_digest *d)
{
        void *v = kiln_digest_map_get(&c->index, d);
        return v ? (size_t)(uintptr_t)v - 1 : NO_EDGE;
}

static size_t node_add(struct kiln_closure *c, const struct kiln_digest *d)
{
        if (c->n_nodes == c->cap_nodes) {
                c->cap_nodes = c->cap_nodes ? c->cap_nodes * 2 : 16;
                c->nodes = kiln_reallocarray(c->nodes, c->cap_nodes, sizeof(*c->nodes));
        }
        size_t i = c->n_nodes++;
        c->nodes[i] = (struct closure_node){.digest = *d, .pending = NO_EDGE};
        kiln_digest_map_put(&c->index, d, (void *)(uintptr_t)(i + 1));
        return i;
}

static void edge_add(struct kiln_closure *c, size_t child, size_t parent, size_t entry)
{
        if (c->n_edges == c->cap_edges) {
                c->cap_edges = c->cap_edges ? c->cap_edges * 2 : 16;
                c->edges = kiln_reallocarray(c->edges, c->cap_edges, sizeof(*c->edges));
        }
        c->edges[c->n_edges] = (struct closure_edge){
            .parent = parent, .entry = entry, .next = c->nodes[child].pending};
        c->nodes[child].pending = c->n_edges++;
}

struct kiln_closure *kiln_closure_new(enum kiln_closure_order order, const struct kiln_digest *root)
{
        struct kiln_closure *c = kiln_calloc(1, sizeof(*c));
        c->order = order;
        if (order == KILN_CLOSURE_ROOT_TO_LEAVES) {
                assert(root);
                node_add(c, root);
        }
        return c;
}

void kiln_closure_free(struct kiln_closure *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < c->n_nodes; i++)
                kiln_directory_free(c->nodes[i].dir);
        free(c->nodes);
        free(c->edges);
        kiln_digest_map_done(&c->index, NULL);
        kiln_buf_done(&c->scratch);
        free(c->out_dirs);
        free(c->out_digests);
        free(c);
}

/* Node names may hold any byte but NUL and '/': keep the message one line. */
static char *printable_name(const struct kiln_bytes *name)
{
        struct kiln_buf b = KILN_BUF_INIT;
        for (size_t i = 0; i < name->len; i++) {
                uint8_t ch = name->data[i];
                if (ch < 0x20 || ch == 0x7f || ch == '\\') {
                        char esc[5];
                        snprintf(esc, sizeof(esc), "\\x%02x", ch);
                        kiln_buf_append(&b, esc, 4);
                } else {
                        kiln_buf_append_byte(&b, ch);
                }
        }
        kiln_buf_append_byte(&b, 0);
        return (char *)kiln_buf_steal(&b, NULL);
}

static int check_edge(const struct kiln_node *edge, uint64_t recorded, struct kiln_error **err)
{
        if (edge->size == recorded)
                return 0;
        _cleanup_free_ char *name = printable_name(&edge->name);
        return kiln_error_set(err, EINVAL,
                              "'%s' has wrong size, specified %" PRIu64 ", recorded %" PRIu64, name,
                              edge->size, recorded);
}

int kiln_closure_want(struct kiln_closure *c, const struct kiln_digest *d, struct kiln_error **err)
{
        size_t i = node_lookup(c, d);
        if (i != NO_EDGE && c->nodes[i].dir)
                return 0;
        if (c->order == KILN_CLOSURE_ROOT_TO_LEAVES && i == NO_EDGE)
                return kiln_error_set(err, EINVAL, "unexpected digest");
        return 1;
}

int kiln_closure_add(struct kiln_closure *c, const struct kiln_directory *dir,
                     struct kiln_digest *ret_digest, struct kiln_error **err)
{
        struct kiln_digest d;
        int r;

        if (c->finished)
                return kiln_error_set(err, EINVAL, "closure already finished");
        kiln_directory_digest(dir, &c->scratch, &d);

        r = kiln_closure_want(c, &d, err);
        if (r < 0)
                return r;
        if (r == 0)
                goto done; /* duplicate */
        size_t self = node_lookup(c, &d);

        /* Check everything before changing anything. Edges to children that
         * are already present: */
        for (size_t k = 0; k < dir->n; k++) {
                const struct kiln_node *e = &dir->nodes[k];
                if (e->kind != KILN_NODE_DIRECTORY)
                        continue;
                size_t ci = node_lookup(c, &e->digest);
                bool present = ci != NO_EDGE && c->nodes[ci].dir;
                if (!present) {
                        if (c->order == KILN_CLOSURE_LEAVES_TO_ROOT)
                                return kiln_error_set(err, EINVAL,
                                                      "unknown directory was referenced");
                        continue;
                }
                r = check_edge(e, c->nodes[ci].size, err);
                if (r < 0)
                        return r;
        }
        /* Edges from parents received earlier (root-to-leaves only): */
        uint64_t size = kiln_directory_size(dir);
        if (self != NO_EDGE)
                for (size_t ei = c->nodes[self].pending; ei != NO_EDGE; ei = c->edges[ei].next) {
                        const struct closure_edge *pe = &c->edges[ei];
                        r = check_edge(&c->nodes[pe->parent].dir->nodes[pe->entry], size, err);
                        if (r < 0)
                                return r;
                }

        /* Accepted: record the Directory and its edges. */
        if (self == NO_EDGE)
                self = node_add(c, &d);
        struct kiln_directory *copy = kiln_calloc(1, sizeof(*copy));
        kiln_directory_copy(copy, dir);
        c->nodes[self].dir = copy;
        c->nodes[self].size = size;
        c->nodes[self].pending = NO_EDGE;
        for (size_t k = 0; k < copy->n; k++) {
                const struct kiln_node *e = &copy->nodes[k];
                if (e->kind != KILN_NODE_DIRECTORY)
                        continue;
                size_t ci = node_lookup(c, &e->digest);
                if (ci == NO_EDGE)
                        ci = node_add(c, &e->digest);
                c->nodes[ci].has_parent = true;
                if (!c->nodes[ci].dir)
                        edge_add(c, ci, self, k);
        }
        c->n_added++;
done:
        if (ret_digest)
                *ret_digest = d;
        return 0;
}

int kiln_closure_finish(struct kiln_closure *c, struct kiln_digest *ret_root,
                        struct kiln_error **err)
{
        if (!c->finished) {
                if (c->n_added == 0)
                        return kiln_error_set(err, EINVAL, "got no directories");
                size_t root = NO_EDGE;
                for (size_t i = 0; i < c->n_nodes; i++) {
                        if (c->nodes[i].has_parent)
                                continue;
                        if (root != NO_EDGE)
                                return kiln_error_set(err, EINVAL, "graph has disconnected roots");
                        root = i;
                }
                for (size_t i = 0; i < c->n_nodes; i++)
                        if (!c->nodes[i].dir)
                                return kiln_error_set(err, EINVAL, "graph is incomplete");
                /* Digests are content addresses, so the graph is acyclic and a
                 * non-empty one has a root. */
                assert(root != NO_EDGE);
                c->root = root;
                c->finished = true;
        }
        if (ret_root)
                *ret_root = c->nodes[c->root].digest;
        return 0;
}

/* Leaves to root: depth-first post-order from the root, children in name
 * order. Nodes are marked when pushed, so each appears once; in a DAG a
 * marked node is either finished or on the stack, and the latter would be
 * a cycle, so every node comes after all of its children. */
static size_t order_postorder(struct kiln_closure *c, size_t *out, uint8_t *mark)
{
        struct frame {
                size_t node, next;
        } *stack = kiln_reallocarray(NULL, c->n_nodes, sizeof(*stack));
        size_t depth = 0, n = 0;

        stack[depth++] = (struct frame){c->root, 0};
        mark[c->root] = 1;
        while (depth > 0) {
                struct frame *f = &stack[depth - 1];
                const struct kiln_directory *dir = c->nodes[f->node].dir;
                size_t child = NO_EDGE;
                while (f->next < dir->n) {
                        const struct kiln_node *e = &dir->nodes[f->next++];
                        if (e->kind != KILN_NODE_DIRECTORY)
                                continue;
                        size_t ci = node_lookup(c, &e->digest);
                        if (!mark[ci]) {
                                child = ci;
                                break;
                        }
                }
                if (child == NO_EDGE) {
                        out[n++] = f->node;
                        depth--;
                        continue;
                }
                mark[child] = 1;
                stack[depth++] = (struct frame){child, 0};
        }
        free(stack);
        return n;
}

/* Root to leaves: breadth-first from the root, children in name order. */
static size_t order_bfs(struct kiln_closure *c, size_t *out, uint8_t *mark)
{
        size_t n = 0;
        out[n++] = c->root;
        mark[c->root] = 1;
        for (size_t head = 0; head < n; head++) {
                const struct kiln_directory *dir = c->nodes[out[head]].dir;
                for (size_t k = 0; k < dir->n; k++) {
                        if (dir->nodes[k].kind != KILN_NODE_DIRECTORY)
                                continue;
                        size_t ci = node_lookup(c, &dir->nodes[k].digest);
                        if (!mark[ci]) {
                                mark[ci] = 1;
                                out[n++] = ci;
                        }
                }
        }
        return n;
}

size_t kiln_closure_drain(struct kiln_closure *c, enum kiln_closure_order order,
                          const struct kiln_directory ***ret_dirs,
                          const struct kiln_digest **ret_digests)
{
        if (!c->finished) {
                *ret_dirs = NULL;
                if (ret_digests)
                        *ret_digests = NULL;
                return 0;
        }
        _cleanup_free_ size_t *idx = kiln_reallocarray(NULL, c->n_nodes, sizeof(*idx));
        _cleanup_free_ uint8_t *mark = kiln_calloc(c->n_nodes, 1);
        size_t n = order == KILN_CLOSURE_LEAVES_TO_ROOT ? order_postorder(c, idx, mark)
                                                        : order_bfs(c, idx, mark);
        /* A finished closure is connected: every node is reached. */
        assert(n == c->n_nodes);

        c->out_dirs = kiln_reallocarray(c->out_dirs, n, sizeof(*c->out_dirs));
        c->out_digests = kiln_reallocarray(c->out_digests, n, sizeof(*c->out_digests));
        for (size_t i = 0; i < n; i++) {
                c->out_dirs[i] = c->nodes[idx[i]].dir;
                c->out_digests[i] = c->nodes[idx[i]].digest;
        }
        *ret_dirs = c->out_dirs;
        if (ret_digests)
                *ret_digests = c->out_digests;
        return n;
}
