/* Cancellation tokens (an eventfd each). */
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <kiln/util/cancel.h>

struct kiln_cancel {
        int fd;
};

struct kiln_cancel *kiln_cancel_new(void)
{
        struct kiln_cancel *c = kiln_malloc(sizeof(*c));
        c->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (c->fd < 0)
                abort(); /* only fails when out of descriptors or memory */
        return c;
}

void kiln_cancel_free(struct kiln_cancel *c)
{
        if (!c)
                return;
        close(c->fd);
        free(c);
}

void kiln_cancel_trigger(struct kiln_cancel *c)
{
        uint64_t one = 1;
        (void)!write(c->fd, &one, sizeof(one));
}

bool kiln_cancel_is_set(const struct kiln_cancel *c)
{
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        return poll(&p, 1, 0) == 1;
}

int kiln_cancel_fd(const struct kiln_cancel *c)
{
        return c->fd;
}
