//! Several servers sharing rooms through Redis (`--redis URL`, issue 11),
//! with the real binaries and a real redis-server started by each test on a
//! free loopback port (persistence off).

use chat_tests::redis::{run_server_to_exit, Redis};

/// Redis absent at start: one line on stderr naming it, exit 1, and no
/// address line (the server never looked like it was running).
#[test]
fn redis_absent_at_start_is_one_line_and_exit_1() {
    let mut redis = Redis::start();
    let url = redis.url();
    redis.kill();
    let (code, stderr) =
        run_server_to_exit(&["--bind", "127.0.0.1", "--port", "0", "--redis", &url]);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line:\n{stderr}");
    assert!(
        stderr.contains(&url["redis://".len()..]),
        "names the address:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A Redis that refuses us (a password is required and the URL has none,
/// or a wrong one): one line, exit 1, the password never shown.
#[test]
fn redis_refusing_at_start_is_one_line_and_exit_1() {
    let redis = Redis::start_with(&["--requirepass", "sesame"]);
    for url in [
        redis.url(),
        redis.url().replace("redis://", "redis://:wrong-pass@"),
    ] {
        let (code, stderr) =
            run_server_to_exit(&["--bind", "127.0.0.1", "--port", "0", "--redis", &url]);
        assert_eq!(code, Some(1), "stderr:\n{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line:\n{stderr}");
        assert!(!stderr.contains("wrong-pass"), "{stderr}");
    }
}

/// A value that is not a `redis://HOST[:PORT][/DB]` URL is a usage error
/// (clap's message, exit 2), before anything touches the network.
#[test]
fn bad_redis_url_is_exit_2() {
    for bad in [
        "localhost:6379",
        "http://127.0.0.1:6379",
        "redis://",
        "redis://127.0.0.1:notaport",
        "redis://127.0.0.1:6379/db",
    ] {
        let (code, stderr) = run_server_to_exit(&["--port", "0", "--redis", bad]);
        assert_eq!(code, Some(2), "{bad}: stderr:\n{stderr}");
        assert!(stderr.contains("--redis"), "{bad}: {stderr}");
    }
}

/// `--redis` is for chat rooms: with echo or upper mode it is a usage
/// error.
#[test]
fn redis_with_a_lab_mode_is_exit_2() {
    let (code, stderr) = run_server_to_exit(&[
        "--port",
        "0",
        "--mode",
        "echo",
        "--redis",
        "redis://127.0.0.1:1",
    ]);
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
}

/// Until the rooms run on Redis, a reachable Redis is refused clearly
/// (exit 1, one line) rather than a server that only pretends to share
/// its rooms.
#[test]
fn reachable_redis_is_refused_clearly_until_rooms_share() {
    let redis = Redis::start();
    let (code, stderr) = run_server_to_exit(&[
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--redis",
        &redis.url(),
    ]);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line:\n{stderr}");
    assert!(stderr.contains("cannot share rooms"), "{stderr}");
}
