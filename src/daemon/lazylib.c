#include <dlfcn.h>

#include "lazylib.h"

int lazy_lib_load(struct lazy_lib *l, struct kiln_error **err)
{
        int r = 0;
        pthread_mutex_lock(&l->lock);
        if (l->loaded)
                goto out;
        void *h = dlopen(l->soname, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
                r = kiln_error_set(err, ELIBACC, "cannot load %s: %s", l->soname, dlerror());
                goto out;
        }
        for (size_t i = 0; l->names[i]; i++) {
                l->ptrs[i] = dlsym(h, l->names[i]);
                if (!l->ptrs[i]) {
                        r = kiln_error_set(err, ELIBACC, "%s has no %s", l->soname, l->names[i]);
                        dlclose(h);
                        goto out;
                }
        }
        l->loaded = true; /* never closed: its functions stay in use */
out:
        pthread_mutex_unlock(&l->lock);
        return r;
}
