/*
 * vspcd: virtual serial port concentrator for VMware vSphere.
 *
 * main() builds the configuration (config.c), opens the listeners, writes
 * STATE_DIR/listeners.json once all of them are up, and runs the event loop
 * until SIGTERM or SIGINT, then tears everything down in order.
 */
#include <sys/types.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "vspcd.h"

struct config cfg;
struct event_base *ev_base;

static struct evconnlistener *vm_listeners[VSPCD_MAX_VM_LISTEN];
static int vm_ports[VSPCD_MAX_VM_LISTEN];
static struct evconnlistener *frontdoor;

/* SIGTERM/SIGINT: leave the loop. */
static void
signal_exit_cb(evutil_socket_t sig, short events, void *arg)
{
	log_info("signal %d: shutting down", (int)sig);
	event_base_loopexit(ev_base, NULL);
}

/* Raise the open-file limit to the hard maximum. */
static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit NOFILE");
	}
}

/* Write listeners.json once every listener is up. */
static void
write_listeners(int client_port, int admin_port)
{
	char buf[1024];
	size_t o;
	int i;

	o = (size_t)snprintf(buf, sizeof buf, "{\"pid\": %ld, \"vm\": [",
	    (long)getpid());
	for (i = 0; i < cfg.n_vm_listen && o < sizeof buf; i++)
		o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%d",
		    i ? ", " : "", vm_ports[i]);
	if (o < sizeof buf)
		o += (size_t)snprintf(buf + o, sizeof buf - o, "], ");
	if (o < sizeof buf)
		o += (size_t)(cfg.client_listen != NULL ?
		    snprintf(buf + o, sizeof buf - o, "\"client\": %d, ",
		    client_port) :
		    snprintf(buf + o, sizeof buf - o, "\"client\": null, "));
	if (o < sizeof buf)
		o += (size_t)(cfg.admin_listen != NULL ?
		    snprintf(buf + o, sizeof buf - o, "\"admin\": %d}\n",
		    admin_port) :
		    snprintf(buf + o, sizeof buf - o, "\"admin\": null}\n"));
	if (o >= sizeof buf)
		fatalx("listeners.json too long");
	if (util_write_file_atomic(cfg.state_dir, "listeners.json", buf,
	    o) == -1)
		fatal("%s/listeners.json", cfg.state_dir);
}

int
main(int argc, char **argv)
{
	struct event *sigterm, *sigint;
	int i, client_port = 0, admin_port = 0;

	if (config_build(&cfg, argc, argv, stderr) != 0)
		exit(1);
	if (cfg.check_only) {
		printf("configuration OK\n");
		exit(0);
	}
	log_init(cfg.foreground, cfg.verbose > 0 ? LOG_LVL_DEBUG :
	    LOG_LVL_INFO, "vspcd");
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();

	if (mkdir(cfg.state_dir, 0750) == -1 && errno != EEXIST)
		fatal("mkdir %s", cfg.state_dir);
	if (!cfg.foreground && daemon(1, 0) == -1)
		fatal("daemon");

	if ((ev_base = event_base_new()) == NULL)
		fatalx("event_base_new");
	sigterm = evsignal_new(ev_base, SIGTERM, signal_exit_cb, NULL);
	sigint = evsignal_new(ev_base, SIGINT, signal_exit_cb, NULL);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);

	for (i = 0; i < cfg.n_vm_listen; i++) {
		vm_listeners[i] = listener_open(cfg.vm_listen[i], "vm",
		    vm_accept_cb, NULL, &vm_ports[i]);
		if (vm_listeners[i] == NULL)
			exit(1);
	}
	if (cfg.client_listen != NULL) {
		frontdoor = listener_open(cfg.client_listen, "front door",
		    client_accept_frontdoor_cb, NULL, &client_port);
		if (frontdoor == NULL)
			exit(1);
	}
	if (cfg.admin_listen != NULL &&
	    admin_start(cfg.admin_listen, &admin_port) == -1)
		exit(1);
	write_listeners(client_port, admin_port);
	log_info("vspcd %s ready", VSPC_VERSION);

	event_base_dispatch(ev_base);

	/* Teardown, in order: listeners, clients, VMs, ports. */
	admin_stop();
	for (i = 0; i < cfg.n_vm_listen; i++)
		evconnlistener_free(vm_listeners[i]);
	if (frontdoor != NULL)
		evconnlistener_free(frontdoor);
	client_close_all();
	vm_close_all();
	port_free_all();
	event_free(sigterm);
	event_free(sigint);
	event_base_free(ev_base);
	log_info("exited cleanly");
	config_free(&cfg);
	return (0);
}
