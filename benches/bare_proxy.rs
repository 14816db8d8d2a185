//! The reference for `make bench` (scripts/bench.sh): a bare pingora
//! `ProxyHttp` built from the same pingora version and with the same server
//! settings as the gateway (threads, upstream keep-alive pool), doing only
//! `upstream_peer`. What Portcullis costs beyond it is our own code.
//!
//! `BARE_LISTEN=127.0.0.1:18481 BARE_UPSTREAM=127.0.0.1:18430 BARE_THREADS=1
//! cargo run --release --example bare_proxy`

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct Bare {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let listen = var("BARE_LISTEN", "127.0.0.1:18481");
    let upstream = var("BARE_UPSTREAM", "127.0.0.1:18430")
        .parse()
        .expect("BARE_UPSTREAM is host:port");
    let threads = var("BARE_THREADS", "1").parse().expect("BARE_THREADS");
    // The gateway's settings (src/gateway/mod.rs `run`).
    let conf = ServerConf {
        threads,
        upstream_keepalive_pool_size: 128,
        pid_file: format!("/tmp/bare_proxy.{}.pid", std::process::id()),
        upgrade_sock: format!("/tmp/bare_proxy.{}.sock", std::process::id()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Bare { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever()
}
