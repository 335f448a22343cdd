//! The families of the HTTP listeners: requests by listener, route class
//! and status (a fixed array of atomics, no lock on the request path),
//! open and refused connections, and TLS reloads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Which listener answered a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Listener {
    /// The public JWKS listener (`--jwks-addr`).
    Jwks,
    /// The token listener (`--token-addr`).
    Token,
    /// The probes-and-metrics listener (`--metrics-addr`).
    Metrics,
}

impl Listener {
    const ALL: [Listener; 3] = [Listener::Jwks, Listener::Token, Listener::Metrics];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Jwks => "jwks",
            Listener::Token => "token",
            Listener::Metrics => "metrics",
        }
    }
}

/// The kind of route a request was for: the `route` label of the HTTP
/// counters. A fixed set, so label cardinality stays bounded whatever paths
/// clients send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// `GET /{namespace}/{name}/.well-known/jwks.json`.
    Jwks,
    /// `GET /.well-known/jwks.json` (the default policy).
    DefaultJwks,
    /// `GET /{namespace}/{name}/.well-known/openid-configuration`.
    Discovery,
    /// `GET /policies`.
    Policies,
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`.
    Readyz,
    /// `GET /metrics`.
    Metrics,
    /// `POST /{namespace}/{name}/token`.
    Token,
    /// `POST /{namespace}/{name}/verify`.
    Verify,
    /// Anything else (answered 404).
    Other,
}

impl RouteClass {
    /// Every route class, in label order.
    pub const ALL: [RouteClass; 10] = [
        RouteClass::Jwks,
        RouteClass::DefaultJwks,
        RouteClass::Discovery,
        RouteClass::Policies,
        RouteClass::Healthz,
        RouteClass::Readyz,
        RouteClass::Metrics,
        RouteClass::Token,
        RouteClass::Verify,
        RouteClass::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Jwks => "jwks",
            RouteClass::DefaultJwks => "default_jwks",
            RouteClass::Discovery => "discovery",
            RouteClass::Policies => "policies",
            RouteClass::Healthz => "healthz",
            RouteClass::Readyz => "readyz",
            RouteClass::Metrics => "metrics",
            RouteClass::Token => "token",
            RouteClass::Verify => "verify",
            RouteClass::Other => "other",
        }
    }

    /// Classifies a request path by its shape alone (the path is not
    /// validated here; an unknown policy still counts as its route class).
    pub fn of_path(path: &str) -> RouteClass {
        match path {
            "/.well-known/jwks.json" => return RouteClass::DefaultJwks,
            "/policies" => return RouteClass::Policies,
            "/healthz" => return RouteClass::Healthz,
            "/readyz" => return RouteClass::Readyz,
            "/metrics" => return RouteClass::Metrics,
            _ => {}
        }
        let Some(rest) = path.strip_prefix('/') else {
            return RouteClass::Other;
        };
        let mut segments = rest.split('/');
        let (Some(_ns), Some(_name), Some(third)) =
            (segments.next(), segments.next(), segments.next())
        else {
            return RouteClass::Other;
        };
        match (third, segments.next(), segments.next()) {
            ("token", None, _) => RouteClass::Token,
            ("verify", None, _) => RouteClass::Verify,
            (".well-known", Some("jwks.json"), None) => RouteClass::Jwks,
            (".well-known", Some("openid-configuration"), None) => RouteClass::Discovery,
            _ => RouteClass::Other,
        }
    }

    /// Whether answers carry an `ETag` (so a `304` is possible).
    pub fn is_cacheable(self) -> bool {
        matches!(
            self,
            RouteClass::Jwks | RouteClass::DefaultJwks | RouteClass::Discovery
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Status codes counted individually; anything else is `status="other"`.
const STATUSES: [u16; 15] = [
    200, 204, 304, 400, 401, 403, 404, 405, 406, 411, 413, 415, 429, 500, 503,
];
const N_STATUS: usize = STATUSES.len() + 1;
const N_CELLS: usize = Listener::ALL.len() * RouteClass::ALL.len() * N_STATUS;

fn status_index(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|s| *s == status)
        .unwrap_or(STATUSES.len())
}

fn status_label(index: usize) -> String {
    STATUSES
        .get(index)
        .map_or_else(|| "other".to_string(), u16::to_string)
}

/// Lock-free request counters, encoded on scrape by a [`Collector`].
#[derive(Debug)]
struct HttpCounters {
    requests: Box<[AtomicU64]>,
    not_modified: [AtomicU64; RouteClass::ALL.len()],
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    listener: &'static str,
    route: &'static str,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

impl HttpCounters {
    fn new() -> Self {
        HttpCounters {
            requests: (0..N_CELLS).map(|_| AtomicU64::new(0)).collect(),
            not_modified: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn cell(listener: Listener, route: RouteClass, status: u16) -> usize {
        let l = listener as usize;
        (l * RouteClass::ALL.len() + route.index()) * N_STATUS + status_index(status)
    }

    fn record(&self, listener: Listener, route: RouteClass, status: u16) {
        self.requests[Self::cell(listener, route, status)].fetch_add(1, Ordering::Relaxed);
        if status == 304 {
            self.not_modified[route.index()].fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Collector for HttpCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut metric = encoder.encode_descriptor(
                "http_requests",
                "HTTP responses by listener, route class and status code.",
                None,
                MetricType::Counter,
            )?;
            for listener in Listener::ALL {
                for route in RouteClass::ALL {
                    for s in 0..N_STATUS {
                        let i = (listener as usize * RouteClass::ALL.len() + route.index())
                            * N_STATUS
                            + s;
                        let n = self.requests[i].load(Ordering::Relaxed);
                        if n == 0 {
                            continue;
                        }
                        let labels = HttpLabels {
                            listener: listener.as_str(),
                            route: route.as_str(),
                            status: status_label(s),
                        };
                        metric
                            .encode_family(&labels)?
                            .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                    }
                }
            }
        }
        let mut metric = encoder.encode_descriptor(
            "http_not_modified",
            "304 Not Modified answers to conditional requests, by route class.",
            None,
            MetricType::Counter,
        )?;
        for route in RouteClass::ALL {
            let n = self.not_modified[route.index()].load(Ordering::Relaxed);
            // The cacheable routes always have a series (0 until the first
            // 304), so the dashboard's 304 share is 0 rather than no data.
            if n == 0 && !route.is_cacheable() {
                continue;
            }
            let labels = RouteLabels {
                route: route.as_str(),
            };
            metric
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
        Ok(())
    }
}

/// The listeners' families, registered in [`Metrics::new`].
pub(super) struct HttpFamilies {
    http: Arc<HttpCounters>,
    open_connections: Family<ListenerLabels, Gauge>,
    refused_connections: Family<ListenerLabels, Counter>,
    tls_reloads: Family<ResultLabels, Counter>,
    tls_reload_failing: Gauge,
}

impl HttpFamilies {
    /// Registers every listener family in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let http = Arc::new(HttpCounters::new());
        registry.register_collector(Box::new(http.clone()));
        let open_connections = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "http_open_connections",
            "HTTP connections open now, by listener",
            open_connections.clone(),
        );
        let refused_connections = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "http_connections_refused",
            "Connections closed at once because the listener was at its connection limit",
            refused_connections.clone(),
        );
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tls_reloads",
            "Changes of the TLS certificate files acted on, by result (success, failure)",
            tls_reloads.clone(),
        );
        let tls_reload_failing = Gauge::default();
        registry.register(
            "tls_reload_failing",
            "1 while the TLS files on disk are unusable and the previous pair is served, else 0",
            tls_reload_failing.clone(),
        );
        HttpFamilies {
            http,
            open_connections,
            refused_connections,
            tls_reloads,
            tls_reload_failing,
        }
    }
}

impl Metrics {
    /// Counts one HTTP answer. Lock-free; called for every request.
    pub fn record_http(&self, listener: Listener, route: RouteClass, status: u16) {
        self.http.http.record(listener, route, status);
    }

    /// Counts a connection a listener took.
    pub fn http_connection_opened(&self, listener: Listener) {
        self.http
            .open_connections
            .get_or_create(&ListenerLabels {
                listener: listener.as_str(),
            })
            .inc();
    }

    /// Counts a connection a listener closed (or that its client closed).
    pub fn http_connection_closed(&self, listener: Listener) {
        self.http
            .open_connections
            .get_or_create(&ListenerLabels {
                listener: listener.as_str(),
            })
            .dec();
    }

    /// Counts a connection refused at the connection limit.
    pub fn http_connection_refused(&self, listener: Listener) {
        self.http
            .refused_connections
            .get_or_create(&ListenerLabels {
                listener: listener.as_str(),
            })
            .inc();
    }

    /// Counts a change of the TLS files acted on: the new pair is in use
    /// (`ok`) or it was refused and the previous one stays.
    pub fn tls_reloaded(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.http
            .tls_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
        self.http.tls_reload_failing.set(i64::from(!ok));
    }
}
