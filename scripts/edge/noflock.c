/* LD_PRELOAD shim: flock() fails with ENOLCK, as on a filesystem without flock support (an NFS
 * mount without a lock manager, some FUSE filesystems, Android shared storage). fcntl() locks and
 * everything else are untouched.
 *
 *   cc -shared -fPIC -o noflock.so noflock.c && LD_PRELOAD=$PWD/noflock.so python -m web
 */
#include <errno.h>

int flock(int fd, int operation) {
    (void)fd;
    (void)operation;
    errno = ENOLCK;
    return -1;
}
