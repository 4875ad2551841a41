/* The sandbox ("pause") process of containerd's CRI pods in bench/cri.py.
 *
 * There is no registry here to pull registry.k8s.io/pause from, so the
 * benchmark builds this stand-in (static, no libc at run time beyond what
 * is linked in) and imports it under that name. It does what Kubernetes'
 * pause does: holds the pod's namespaces by staying alive, reaps the
 * orphans reparented to it, and exits on SIGINT/SIGTERM.
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void leave(int sig) { (void)sig; _exit(0); }

static void reap(int sig)
{
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

int main(void)
{
    struct sigaction sa = {0};

    sa.sa_handler = leave;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = reap;
    sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    for (;;)
        pause();
}
