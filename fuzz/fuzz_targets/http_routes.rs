//! The HTTP routes of both listeners through `warp::test`, serving one
//! policy with the token endpoint on. Oracle: no input yields a 5xx (the
//! policy has keys, so not even 503), and every error body is JSON
//! `{"error","message"}` with no private JWK member anywhere. On the JWKS
//! listener, whatever the fast path (`http::fast_path::answer`) takes, it
//! answers exactly as the warp routes do: status, headers and body.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use warp::Filter as _;
use warp::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

/// The input is a small text form of a request, so seeds are readable:
/// `<listener: J or T> <method> <path>\n<name>: <value>\n...\n\n<body>`.
#[derive(Debug)]
struct Request<'a> {
    token_listener: bool,
    method: &'a str,
    path: &'a str,
    headers: Vec<(&'a [u8], &'a [u8])>,
    body: &'a [u8],
}

fn parse(data: &[u8]) -> Option<Request<'_>> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &b""[..]),
    };
    let mut lines = head.split(|b| *b == b'\n');
    let first = std::str::from_utf8(lines.next()?).ok()?;
    let mut words = first.splitn(3, ' ');
    let token_listener = words.next()? == "T";
    let method = words.next()?;
    let path = words.next()?;
    let headers = lines
        .filter_map(|l| {
            let i = l.iter().position(|b| *b == b':')?;
            Some((&l[..i], l[i + 1..].trim_ascii_start()))
        })
        .collect();
    Some(Request {
        token_listener,
        method,
        path,
        headers,
        body,
    })
}

const METHODS: [&str; 6] = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"];

type Routes = warp::filters::BoxedFilter<(warp::reply::Response,)>;

struct Fixture {
    rt: tokio::runtime::Runtime,
    state: jwks_operator::http::SharedState,
    jwks: Routes,
    token: Routes,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let state = jwks_operator_fuzz::http_state();
        let served = state.clone();
        let jwks = jwks_operator::http::jwks_routes(state.clone())
            .map(warp::Reply::into_response)
            .boxed();
        let token = jwks_operator::http::token_routes(state)
            .map(warp::Reply::into_response)
            .boxed();
        Fixture {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            state: served,
            jwks,
            token,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(req) = parse(data) else {
        return;
    };
    // warp::test panics on what a real server would never hand it.
    if !METHODS.contains(&req.method)
        || !req.path.starts_with('/')
        || req.path.parse::<Uri>().is_err()
    {
        return;
    }
    let f = fixture();
    let mut builder = warp::test::request()
        .method(req.method)
        .path(req.path)
        .body(req.body.to_vec());
    let mut headers = HeaderMap::new();
    for (name, value) in &req.headers {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            builder = builder.header(&name, &value);
            headers.append(name, value);
        }
    }
    let fast = if req.token_listener {
        None
    } else {
        let method = Method::from_bytes(req.method.as_bytes()).expect("one of METHODS");
        let uri: Uri = req.path.parse().expect("parsed above");
        jwks_operator::http::fast_path::answer(&f.state, &method, uri.path(), &headers)
    };
    let routes = if req.token_listener {
        &f.token
    } else {
        &f.jwks
    };
    let res = f.rt.block_on(builder.reply(routes));
    if let Some(fast) = fast {
        let (parts, body) = fast.into_parts();
        let body =
            f.rt.block_on(http_body_util::BodyExt::collect(body))
                .expect("an in-memory body")
                .to_bytes();
        assert_eq!(
            (parts.status, &parts.headers, body.as_ref()),
            (res.status(), res.headers(), res.body().as_ref()),
            "the fast path answered {req:?} unlike the warp routes"
        );
    }
    let status = res.status();
    assert!(
        !status.is_server_error(),
        "{status} for {req:?}: {:?}",
        res.body()
    );
    if status.is_client_error() {
        let doc: serde_json::Value = serde_json::from_slice(res.body())
            .unwrap_or_else(|e| panic!("{status} with a non-JSON body ({e}) for {req:?}"));
        assert!(
            doc["error"].is_string() && doc["message"].is_string(),
            "{doc}"
        );
    }
    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(res.body()) {
        let text = doc.to_string();
        for member in [
            "\"d\":", "\"p\":", "\"q\":", "\"dp\":", "\"dq\":", "\"qi\":",
        ] {
            assert!(!text.contains(member), "a response carries {member}");
        }
    }
});
