//! A bare warp server answering every `GET` with the same cached bytes and
//! headers as the JWKS route: the ceiling for warp on this machine, started
//! by `benches/http/run.sh` beside the operator and nginx. Not a benchmark by
//! itself: without its arguments it exits at once (so `cargo bench` skips it).
//!
//! ```text
//! bare_warp --serve <addr> <body-file> <content-type> <etag> <cache-control>
//! ```
//!
//! Same runtime as the operator (tokio multi-thread, workers from the CPU
//! affinity or `TOKIO_WORKER_THREADS`), same server (`warp::serve`), no routing,
//! no metrics.

use std::net::SocketAddr;

use bytes::Bytes;
use warp::Filter;
use warp::http::{HeaderValue, header};
use warp::reply::Response;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [flag, addr, file, content_type, etag, cache_control] = args.as_slice() else {
        eprintln!("bare_warp: a reference server for benches/http/run.sh; nothing to do");
        return;
    };
    if flag != "--serve" {
        eprintln!("bare_warp: a reference server for benches/http/run.sh; nothing to do");
        return;
    }
    let addr: SocketAddr = addr.parse().expect("an address such as 127.0.0.1:8081");
    let body = Bytes::from(std::fs::read(file).expect("the body file"));
    let header = |v: &str| HeaderValue::from_str(v).expect("a header value");
    let (content_type, etag, cache_control) =
        (header(content_type), header(etag), header(cache_control));

    let route = warp::get().map(move || {
        let mut res = Response::new(body.clone().into());
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, content_type.clone());
        h.insert(header::ETAG, etag.clone());
        h.insert(header::CACHE_CONTROL, cache_control.clone());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        res
    });
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(warp::serve(route).run(addr));
}
