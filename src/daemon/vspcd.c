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
#include <event2/http.h>
#include <jansson.h>

#include "vspcd.h"

struct config cfg;
struct event_base *ev_base;

#define VM_LISTENERS	(2 * VSPCD_MAX_VM_LISTEN)	/* plain, then TLS */
static struct evconnlistener *vm_listeners[VM_LISTENERS];
static int vm_ports[VM_LISTENERS];
static struct evconnlistener *frontdoor, *frontdoor_tls;
static int frontdoor_tls_port;
static struct evconnlistener *ro_door;		/* client-listen-ro */
static int ro_door_port;
static struct evconnlistener *unix_door;
static char *unix_door_path;
static int frontdoor_port, admin_port;
static int saved_argc;
static char **saved_argv;

static void	reload(void);

/* SIGTERM/SIGINT: leave the loop. */
static void
signal_exit_cb(evutil_socket_t sig, short events, void *arg)
{
	log_info("signal %d: shutting down", (int)sig);
	event_base_loopexit(ev_base, NULL);
}

/* SIGHUP: re-read the configuration and reopen the console logs. */
static void
signal_hup_cb(evutil_socket_t sig, short events, void *arg)
{
	log_info("SIGHUP: reloading");
	reload();
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

/* A JSON string literal for s (caller frees). */
static char *
json_quote(const char *s)
{
	json_t *j;
	char *out;

	j = json_string(s);
	out = j != NULL ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
	json_decref(j);
	return (out != NULL ? out : xstrdup("null"));
}

/* Write listeners.json once every listener is up. */
static void
write_listeners(void)
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
		o += (size_t)snprintf(buf + o, sizeof buf - o,
		    "], \"vm_tls\": [");
	for (i = 0; i < cfg.n_vm_listen_tls && o < sizeof buf; i++)
		o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%d",
		    i ? ", " : "", vm_ports[cfg.n_vm_listen + i]);
	if (o < sizeof buf)
		o += (size_t)snprintf(buf + o, sizeof buf - o, "], ");
	if (o < sizeof buf)
		o += (size_t)(cfg.client_listen_tls != NULL ?
		    snprintf(buf + o, sizeof buf - o, "\"client_tls\": %d, ",
		    frontdoor_tls_port) :
		    snprintf(buf + o, sizeof buf - o, "\"client_tls\": null, "));
	if (o < sizeof buf)
		o += (size_t)(cfg.client_listen != NULL ?
		    snprintf(buf + o, sizeof buf - o, "\"client\": %d, ",
		    frontdoor_port) :
		    snprintf(buf + o, sizeof buf - o, "\"client\": null, "));
	if (o < sizeof buf)
		o += (size_t)(cfg.client_listen_ro != NULL ?
		    snprintf(buf + o, sizeof buf - o, "\"client_ro\": %d, ",
		    ro_door_port) :
		    snprintf(buf + o, sizeof buf - o, "\"client_ro\": null, "));
	if (o < sizeof buf && unix_door_path != NULL) {
		char *j = json_quote(unix_door_path);

		o += (size_t)snprintf(buf + o, sizeof buf - o,
		    "\"unix\": %s, ", j);
		free(j);
	} else if (o < sizeof buf)
		o += (size_t)snprintf(buf + o, sizeof buf - o,
		    "\"unix\": null, ");
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

/* True if two optional strings are equal. */
static bool
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return (a == b);
	return (strcmp(a, b) == 0);
}

/* The i-th VM listener of conf: the plain ones, then the TLS ones. */
static const char *
vm_listen_spec(const struct config *conf, int i, bool *tls)
{
	*tls = i >= conf->n_vm_listen;
	return (*tls ? conf->vm_listen_tls[i - conf->n_vm_listen] :
	    conf->vm_listen[i]);
}

/* Open a front door (plain or TLS) unless it is off. */
static int
frontdoor_open(const char *spec, bool tls, struct evconnlistener **out,
    int *port)
{
	*out = NULL;
	*port = 0;
	if (spec == NULL)
		return (0);
	*out = listener_open(spec, tls ? "TLS front door" : "front door",
	    client_accept_frontdoor_cb, tls ? TLS_LISTENER : NULL, port);
	return (*out == NULL ? -1 : 0);
}

/*
 * Open the listeners of ncfg, reusing those of cfg whose address did not
 * change. All or nothing: on any failure the new ones are closed again and
 * -1 is returned with cfg's listeners untouched.
 */
static int
listeners_apply(struct config *ncfg, bool initial)
{
	struct evconnlistener *nvm[VM_LISTENERS];
	int nport[VM_LISTENERS], i, j, n, on, fd_port = frontdoor_port;
	int tfd_port = frontdoor_tls_port;
	bool reused[VM_LISTENERS], fresh[VM_LISTENERS], tls, otls;
	struct evconnlistener *nfd = frontdoor, *ntfd = frontdoor_tls;
	bool fd_fresh = false, tfd_fresh = false;
	const char *spec;
	struct evconnlistener *nro = ro_door;
	bool ro_fresh = false;
	int ro_port = ro_door_port;

	n = ncfg->n_vm_listen + ncfg->n_vm_listen_tls;
	on = initial ? 0 : cfg.n_vm_listen + cfg.n_vm_listen_tls;
	memset(reused, 0, sizeof reused);
	for (i = 0; i < n; i++) {
		nvm[i] = NULL;
		fresh[i] = false;
		spec = vm_listen_spec(ncfg, i, &tls);
		for (j = 0; j < on; j++) {
			if (!reused[j] && vm_listeners[j] != NULL &&
			    strcmp(vm_listen_spec(&cfg, j, &otls), spec) == 0 &&
			    otls == tls) {
				reused[j] = true;
				nvm[i] = vm_listeners[j];
				nport[i] = vm_ports[j];
				break;
			}
		}
		if (nvm[i] != NULL)
			continue;
		nvm[i] = listener_open(spec, tls ? "vm (TLS)" : "vm",
		    vm_accept_cb, tls ? TLS_LISTENER : NULL, &nport[i]);
		if (nvm[i] == NULL)
			goto fail;
		vm_listener_setup(nvm[i]);
		fresh[i] = true;
	}
	if (initial || !str_eq(cfg.client_listen, ncfg->client_listen)) {
		if (frontdoor_open(ncfg->client_listen, false, &nfd,
		    &fd_port) == -1)
			goto fail;
		fd_fresh = nfd != NULL;
	}
	if (initial ||
	    !str_eq(cfg.client_listen_tls, ncfg->client_listen_tls)) {
		if (frontdoor_open(ncfg->client_listen_tls, true, &ntfd,
		    &tfd_port) == -1)
			goto fail;
		tfd_fresh = ntfd != NULL;
	}
	if (initial || !str_eq(cfg.client_listen_ro, ncfg->client_listen_ro)) {
		nro = NULL;
		ro_port = 0;
		if (ncfg->client_listen_ro != NULL) {
			nro = listener_open(ncfg->client_listen_ro,
			    "read-only front door", client_accept_frontdoor_cb,
			    CLIENT_DOOR_RO, &ro_port);
			if (nro == NULL)
				goto fail;
			ro_fresh = true;
		}
	}
	/* Commit: close what is no longer wanted. */
	for (j = 0; j < on; j++) {
		if (!reused[j] && vm_listeners[j] != NULL) {
			log_info("vm listener on %s closed",
			    vm_listen_spec(&cfg, j, &otls));
			listener_free(vm_listeners[j]);
		}
	}
	for (i = 0; i < VM_LISTENERS; i++) {
		vm_listeners[i] = i < n ? nvm[i] : NULL;
		vm_ports[i] = i < n ? nport[i] : 0;
	}
	if (nfd != frontdoor && frontdoor != NULL)
		listener_free(frontdoor);
	frontdoor = nfd;
	frontdoor_port = fd_port;
	if (nro != ro_door && ro_door != NULL)
		listener_free(ro_door);
	ro_door = nro;
	ro_door_port = ro_port;
	if (ntfd != frontdoor_tls && frontdoor_tls != NULL)
		listener_free(frontdoor_tls);
	frontdoor_tls = ntfd;
	frontdoor_tls_port = tfd_port;
	return (0);
fail:
	for (i = 0; i < n; i++) {
		if (fresh[i] && nvm[i] != NULL)
			listener_free(nvm[i]);
	}
	if (fd_fresh && nfd != NULL)
		listener_free(nfd);
	if (ro_fresh && nro != NULL)
		listener_free(nro);
	if (tfd_fresh && ntfd != NULL)
		listener_free(ntfd);
	return (-1);
}

/* Free a config's strings and struct, keeping cfg's. */
static void
config_swap(struct config *ncfg)
{
	struct config old = cfg;

	cfg = *ncfg;
	config_free(&old);
	memset(ncfg, 0, sizeof *ncfg);
}

/*
 * SIGHUP: build a whole new configuration from the file and the original
 * flags; if it has errors, report them and keep the old one whole. Else
 * apply what changed: listeners (all or nothing), limits, log settings.
 * The state dir, per-port client address and port range apply at restart.
 */
static void
reload(void)
{
	struct config ncfg;
	struct evhttp *nhttp = NULL;
	struct client *c, *c1;
	char *errs = NULL, *line, *save;
	size_t errlen = 0;
	FILE *f;
	int n, nadmin_port = 0;
	bool admin_changed;

	memset(&ncfg, 0, sizeof ncfg);
	if ((f = open_memstream(&errs, &errlen)) == NULL) {
		log_warn("reload: open_memstream");
		return;
	}
	n = config_build(&ncfg, saved_argc, saved_argv, f);
	fclose(f);
	if (n != 0) {
		for (line = strtok_r(errs, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save))
			log_warnx("reload: %s", line);
		log_warnx("reload: %d error%s; keeping the old configuration",
		    n, n == 1 ? "" : "s");
		audit_event("config-reload", NULL, NULL, "refused: errors");
		free(errs);
		config_free(&ncfg);
		return;
	}
	free(errs);
	if (strcmp(ncfg.state_dir, cfg.state_dir) != 0) {
		log_warnx("reload: state-dir changes apply at restart");
		free(ncfg.state_dir);
		ncfg.state_dir = xstrdup(cfg.state_dir);
	}
	if (strcmp(ncfg.unix_listen, cfg.unix_listen) != 0)
		log_warnx("reload: unix-listen changes apply at restart");
	if (strcmp(ncfg.client_bind, cfg.client_bind) != 0 ||
	    ncfg.port_lo != cfg.port_lo || ncfg.port_hi != cfg.port_hi) {
		log_warnx("reload: client-bind and port-range changes apply "
		    "at restart");
		free(ncfg.client_bind);
		ncfg.client_bind = xstrdup(cfg.client_bind);
		ncfg.port_lo = cfg.port_lo;
		ncfg.port_hi = cfg.port_hi;
	}
	/* The certificate first, then the admin listener: all or nothing. */
	if (tls_prepare(&ncfg, NULL) != 0) {
		log_warnx("reload: TLS set-up failed; keeping the old "
		    "configuration");
		audit_event("config-reload", NULL, NULL, "refused: TLS");
		config_free(&ncfg);
		return;
	}
	admin_changed = !str_eq(ncfg.admin_listen, cfg.admin_listen) ||
	    ncfg.admin_tls != cfg.admin_tls;
	if (admin_changed && ncfg.admin_listen != NULL &&
	    (nhttp = admin_open(ncfg.admin_listen, ncfg.admin_tls,
	    &nadmin_port)) == NULL) {
		log_warnx("reload: cannot open the new listeners; keeping the "
		    "old configuration");
		tls_abort();
		config_free(&ncfg);
		return;
	}
	if (listeners_apply(&ncfg, false) == -1) {
		log_warnx("reload: cannot open the new listeners; keeping the "
		    "old configuration");
		if (nhttp != NULL)
			evhttp_free(nhttp);
		tls_abort();
		config_free(&ncfg);
		return;
	}
	tls_commit();
	if (admin_changed) {
		admin_swap(nhttp);
		admin_port = nadmin_port;
	}
	ncfg.foreground = cfg.foreground;
	config_swap(&ncfg);
	log_set_level(cfg.verbose > 0 ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	vm_policy_reload();
	consolelog_reopen_all();
	audit_reopen();
	audit_event("config-reload", NULL, NULL, "applied");
	/* Rights follow the new rules: revoked readers are detached. */
	TAILQ_FOREACH_SAFE(c, &all_clients, all_entry, c1) {
		if (c->port != NULL && port_authorize(c->port, c) == -1)
			client_close(c, "access revoked");
	}
	share_reload();
	write_listeners();
	log_info("reload: configuration applied");
}

/* libevent's own messages go to our log, not to its default stderr. */
static void
libevent_log_cb(int severity, const char *msg)
{
	switch (severity) {
	case EVENT_LOG_DEBUG:
		log_debug("libevent: %s", msg);
		break;
	case EVENT_LOG_MSG:
		log_info("libevent: %s", msg);
		break;
	default:
		log_warnx("libevent: %s", msg);
		break;
	}
}

int
main(int argc, char **argv)
{
	struct event *sigterm, *sigint, *sighup;
	struct event_config *evcfg;

	saved_argc = argc;
	saved_argv = argv;
	if (config_build(&cfg, argc, argv, stderr) != 0)
		exit(1);
	if (tls_prepare(&cfg, stderr) != 0)
		exit(1);
	if (cfg.check_only) {
		tls_abort();
		printf("configuration OK\n");
		config_free(&cfg);
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

	/*
	 * The epoll changelist folds the EV_WRITE del and add that every
	 * bufferevent write costs into one epoll_ctl per loop turn (or none).
	 * Its one caveat, two fds for one file description both in epoll,
	 * does not arise here: the only dup(2)s are of log files.
	 */
	event_set_log_callback(libevent_log_cb);
	if ((evcfg = event_config_new()) == NULL ||
	    event_config_set_flag(evcfg,
	    EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST) == -1 ||
	    (ev_base = event_base_new_with_config(evcfg)) == NULL)
		fatalx("event_base_new");
	event_config_free(evcfg);
	sigterm = evsignal_new(ev_base, SIGTERM, signal_exit_cb, NULL);
	sigint = evsignal_new(ev_base, SIGINT, signal_exit_cb, NULL);
	sighup = evsignal_new(ev_base, SIGHUP, signal_hup_cb, NULL);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	evsignal_add(sighup, NULL);

	/* State and logs: a failure is reported, consoles still work. */
	if (db_open(cfg.state_dir) == -1)
		log_warnx("state db unavailable: client ports will not be "
		    "remembered");
	port_state_load();
	db_batch(ev_base);	/* from now on one transaction per loop turn */
	if (bev_cork_init(ev_base) == -1) /* one send per VM per turn */
		fatalx("event_new");
	consolelog_init();
	audit_init();
	vm_policy_reload();
	tls_commit();

	if (listeners_apply(&cfg, true) == -1)
		exit(1);
	if (strcmp(cfg.unix_listen, "off") != 0) {
		unix_door = listener_open_unix(cfg.unix_listen,
		    client_accept_unix_cb, NULL);
		if (unix_door == NULL)
			exit(1);
		unix_door_path = xstrdup(cfg.unix_listen);
	}
	if (cfg.admin_listen != NULL &&
	    admin_start(cfg.admin_listen, cfg.admin_tls, &admin_port) == -1)
		exit(1);
	write_listeners();
	log_info("vspcd %s ready", VSPC_VERSION);

	event_base_dispatch(ev_base);

	/* Teardown, in order: listeners, clients, VMs, ports, logs, db. */
	admin_stop();
	for (int i = 0; i < VM_LISTENERS; i++) {
		if (vm_listeners[i] != NULL)
			listener_free(vm_listeners[i]);
	}
	if (frontdoor != NULL)
		listener_free(frontdoor);
	if (ro_door != NULL)
		listener_free(ro_door);
	if (frontdoor_tls != NULL)
		listener_free(frontdoor_tls);
	if (unix_door != NULL) {
		listener_free(unix_door);
		(void)unlink(unix_door_path);
		free(unix_door_path);
	}
	client_close_all();
	vm_close_all();
	bev_cork_free();
	port_free_all();
	consolelog_shutdown();
	audit_shutdown();
	db_close();
	tls_shutdown();
	event_free(sigterm);
	event_free(sigint);
	event_free(sighup);
	event_base_free(ev_base);
	log_info("exited cleanly");
	config_free(&cfg);
	return (0);
}
