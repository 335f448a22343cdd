//! Route tests (warp::test, no sockets) and the bad-input battery.
