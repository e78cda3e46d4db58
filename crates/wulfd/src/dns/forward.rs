//! Forwarding names outside the cluster to upstream servers: UDP first, TCP again when the UDP
//! answer is truncated and the client asked over TCP; each upstream in turn until one answers.
//! The upstream that answered last is asked first next time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};

/// How long one upstream gets to answer.
pub const PER_UPSTREAM: Duration = Duration::from_secs(2);
/// How long a forwarded query may take in all, before the client gets SERVFAIL.
pub const TOTAL: Duration = Duration::from_millis(4500);

pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    preferred: AtomicUsize,
    per_upstream: Duration,
    total: Duration,
}

/// Why one exchange with an upstream failed.
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no answer in time")]
    Timeout,
    #[error("answer too large or malformed")]
    Malformed,
}

fn same_question(a: &Query, b: &Query) -> bool {
    a.query_type() == b.query_type()
        && a.query_class() == b.query_class()
        && a.name().to_lowercase() == b.name().to_lowercase()
}

/// True when `resp` answers `query` (id, QR and the question match).
pub fn answers(resp: &[u8], id: u16, question: &Query) -> Option<Message> {
    if resp.len() < 12 || u16::from_be_bytes([resp[0], resp[1]]) != id || resp[2] & 0x80 == 0 {
        return None;
    }
    let msg = Message::from_vec(resp).ok()?;
    let ok = msg.message_type == MessageType::Response
        && msg.queries.len() == 1
        && same_question(&msg.queries[0], question);
    ok.then_some(msg)
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>) -> Forwarder {
        Forwarder {
            upstreams,
            preferred: AtomicUsize::new(0),
            per_upstream: PER_UPSTREAM,
            total: TOTAL,
        }
    }

    #[cfg(test)]
    fn with_timeouts(upstreams: Vec<SocketAddr>, per: Duration, total: Duration) -> Forwarder {
        Forwarder {
            per_upstream: per,
            total,
            ..Forwarder::new(upstreams)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.upstreams.is_empty()
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Send `query` (a whole DNS message whose only question is `question`) upstream and
    /// return the answer with the client's id, or None when no upstream answered.
    pub async fn forward(
        &self,
        query: &[u8],
        question: &Query,
        tcp_client: bool,
    ) -> Option<Vec<u8>> {
        if query.len() < 12 || self.upstreams.is_empty() {
            return None;
        }
        let client_id = [query[0], query[1]];
        let deadline = Instant::now() + self.total;
        let n = self.upstreams.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        for i in 0..n {
            let idx = (first + i) % n;
            let up = self.upstreams[idx];
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let until = (now + self.per_upstream).min(deadline);
            let id: u16 = rand::random();
            let mut q = query.to_vec();
            q[..2].copy_from_slice(&id.to_be_bytes());
            let got = match udp_exchange(up, &q, id, question, until).await {
                Ok(resp) if tcp_client && resp.len() > 2 && resp[2] & 0x02 != 0 => {
                    // Truncated: ask the same upstream over TCP.
                    let until = (Instant::now() + self.per_upstream).min(deadline);
                    match tcp_exchange(up, &q, id, question, until).await {
                        Ok(full) => Ok(full),
                        Err(e) => {
                            tracing::debug!(upstream = %up, error = %e, "DNS: TCP retry failed; passing the truncated answer on");
                            Ok(resp)
                        }
                    }
                }
                other => other,
            };
            match got {
                Ok(mut resp) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    resp[..2].copy_from_slice(&client_id);
                    return Some(resp);
                }
                Err(e) => {
                    tracing::debug!(upstream = %up, name = %question.name(), error = %e, "DNS: upstream did not answer; trying the next");
                }
            }
        }
        None
    }
}

async fn udp_exchange(
    up: SocketAddr,
    q: &[u8],
    id: u16,
    question: &Query,
    until: Instant,
) -> Result<Vec<u8>, ExchangeError> {
    let local: SocketAddr = match up.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    // Connected: the kernel drops datagrams from anyone but the upstream.
    sock.connect(up).await?;
    sock.send(q).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = timeout_at(until, sock.recv(&mut buf))
            .await
            .map_err(|_| ExchangeError::Timeout)??;
        if answers(&buf[..n], id, question).is_some() {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp_exchange(
    up: SocketAddr,
    q: &[u8],
    id: u16,
    question: &Query,
    until: Instant,
) -> Result<Vec<u8>, ExchangeError> {
    let work = async {
        let mut s = TcpStream::connect(up).await?;
        let len = u16::try_from(q.len()).map_err(|_| ExchangeError::Malformed)?;
        let mut out = Vec::with_capacity(q.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(q);
        s.write_all(&out).await?;
        let mut lb = [0u8; 2];
        s.read_exact(&mut lb).await?;
        let mut resp = vec![0u8; usize::from(u16::from_be_bytes(lb))];
        s.read_exact(&mut resp).await?;
        if answers(&resp, id, question).is_none() {
            return Err(ExchangeError::Malformed);
        }
        Ok(resp)
    };
    timeout_at(until, work)
        .await
        .map_err(|_| ExchangeError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, OpCode, ResponseCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn query(name: &str) -> (Vec<u8>, Query) {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        let q = Query::query(Name::from_ascii(name).unwrap(), RecordType::A);
        m.add_query(q.clone());
        (m.to_vec().unwrap(), q)
    }

    fn answer(req: &Message, ip: [u8; 4], truncated: bool) -> Vec<u8> {
        let mut m = Message::response(req.metadata.id, OpCode::Query);
        m.metadata.truncation = truncated;
        m.metadata.response_code = ResponseCode::NoError;
        m.add_query(req.queries[0].clone());
        if !truncated {
            m.add_answer(Record::from_rdata(
                req.queries[0].name().clone(),
                30,
                RData::A(A(ip.into())),
            ));
        }
        m.to_vec().unwrap()
    }

    /// A stub upstream on 127.0.0.1: over UDP it first sends a stray datagram with the wrong
    /// id, then answers (truncated when `truncate`); over TCP it answers in full.
    async fn stub(truncate: bool) -> SocketAddr {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
                let req = Message::from_vec(&buf[..n]).unwrap();
                let mut wrong = answer(&req, [6, 6, 6, 6], false);
                wrong[0] ^= 0xff;
                udp.send_to(&wrong, peer).await.unwrap();
                udp.send_to(&answer(&req, [192, 0, 2, 1], truncate), peer)
                    .await
                    .unwrap();
            }
        });
        tokio::spawn(async move {
            loop {
                let (mut s, _) = tcp.accept().await.unwrap();
                let mut lb = [0u8; 2];
                s.read_exact(&mut lb).await.unwrap();
                let mut b = vec![0u8; usize::from(u16::from_be_bytes(lb))];
                s.read_exact(&mut b).await.unwrap();
                let req = Message::from_vec(&b).unwrap();
                let resp = answer(&req, [192, 0, 2, 2], false);
                let mut out = (resp.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&resp);
                s.write_all(&out).await.unwrap();
            }
        });
        addr
    }

    fn first_a(resp: &[u8]) -> Option<Ipv4Addr> {
        let m = Message::from_vec(resp).unwrap();
        assert_eq!(m.metadata.id, 0x1234, "the client's id is restored");
        m.answers.iter().find_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
    }

    #[tokio::test]
    async fn forwards_and_skips_a_dead_upstream() {
        let good = stub(false).await;
        // A port nobody listens on: refused at once.
        let dead = {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            s.local_addr().unwrap()
        };
        let f = Forwarder::with_timeouts(
            vec![dead, good],
            Duration::from_millis(500),
            Duration::from_secs(2),
        );
        let (q, question) = query("example.com.");
        let resp = f.forward(&q, &question, false).await.unwrap();
        assert_eq!(first_a(&resp), Some(Ipv4Addr::new(192, 0, 2, 1)));
        // The one that answered is asked first now.
        assert_eq!(f.preferred.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn retries_truncated_answers_over_tcp() {
        let up = stub(true).await;
        let f = Forwarder::with_timeouts(vec![up], Duration::from_secs(1), Duration::from_secs(2));
        let (q, question) = query("big.example.");
        // A UDP client gets the truncated answer (and retries over TCP itself).
        let resp = f.forward(&q, &question, false).await.unwrap();
        assert_eq!(resp[2] & 0x02, 0x02);
        assert_eq!(first_a(&resp), None);
        // A TCP client gets the whole answer.
        let resp = f.forward(&q, &question, true).await.unwrap();
        assert_eq!(first_a(&resp), Some(Ipv4Addr::new(192, 0, 2, 2)));
    }

    #[tokio::test]
    async fn none_answers() {
        // Silent upstream: bound, never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let f = Forwarder::with_timeouts(
            vec![silent.local_addr().unwrap()],
            Duration::from_millis(200),
            Duration::from_millis(300),
        );
        let (q, question) = query("example.com.");
        let t = std::time::Instant::now();
        assert!(f.forward(&q, &question, false).await.is_none());
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(Forwarder::new(vec![])
            .forward(&q, &question, false)
            .await
            .is_none());
    }
}
