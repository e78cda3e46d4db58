//! One read transfer on its own socket: optional OACK, then DATA blocks in windows (RFC 7440;
//! a window of 1 is plain RFC 1350 lock-step), retransmission on timeout with a bounded retry
//! count, block numbers rolling over after 65535.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::packet::{data_header, parse_reply, wire_block, Mode, Reply};

/// Retransmissions of one window (or the OACK) before giving up.
pub const MAX_RETRIES: u32 = 5;
/// Without a `timeout` option the wait starts at 1 s and doubles up to this.
const MAX_DEFAULT_RTO: Duration = Duration::from_secs(4);
/// Bytes read from disk ahead of what the window needs (fewer disk round trips at small
/// block sizes).
const READ_AHEAD_BYTES: usize = 64 * 1024;
const MAX_READ_AHEAD_BLOCKS: usize = 128;

/// Blocks of a file, as DATA packets, read from disk as the transfer goes.
pub struct Source {
    reader: BufReader<File>,
    mode: Mode,
    /// The second byte of a netascii pair that did not fit in the previous block.
    pending: Option<u8>,
}

impl Source {
    pub fn new(file: File, mode: Mode) -> Source {
        Source {
            reader: BufReader::with_capacity(64 * 1024, file),
            mode,
            pending: None,
        }
    }

    /// Up to `count` DATA packets for blocks `first..`, stopping after a short (last) block.
    fn read_blocks(
        &mut self,
        first: u64,
        count: usize,
        blksize: usize,
    ) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::with_capacity(count);
        for seq in first..first + count as u64 {
            let mut pkt = Vec::with_capacity(4 + blksize);
            pkt.extend_from_slice(&data_header(wire_block(seq)));
            match self.mode {
                Mode::Octet => self.read_octet(&mut pkt, blksize)?,
                Mode::Netascii => self.read_netascii(&mut pkt, blksize)?,
            }
            let last = pkt.len() - 4 < blksize;
            out.push(pkt);
            if last {
                break;
            }
        }
        Ok(out)
    }

    fn read_octet(&mut self, pkt: &mut Vec<u8>, blksize: usize) -> io::Result<()> {
        pkt.resize(4 + blksize, 0);
        let mut filled = 0;
        while filled < blksize {
            match self.reader.read(&mut pkt[4 + filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        pkt.truncate(4 + filled);
        Ok(())
    }

    /// netascii (RFC 764): LF is sent as CR LF and CR as CR NUL.
    fn read_netascii(&mut self, pkt: &mut Vec<u8>, blksize: usize) -> io::Result<()> {
        while pkt.len() - 4 < blksize {
            if let Some(b) = self.pending.take() {
                pkt.push(b);
                continue;
            }
            let buf = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let Some(&b) = buf.first() else { break };
            self.reader.consume(1);
            match b {
                b'\n' => {
                    pkt.push(b'\r');
                    self.pending = Some(b'\n');
                }
                b'\r' => {
                    pkt.push(b'\r');
                    self.pending = Some(0);
                }
                b => pkt.push(b),
            }
        }
        Ok(())
    }
}

/// How a transfer runs.
#[derive(Debug, Clone)]
pub struct Params {
    pub blksize: usize,
    pub windowsize: usize,
    /// Fixed retransmission timeout (the `timeout` option), else 1 s doubling up to 4 s.
    pub timeout: Option<Duration>,
    /// The OACK to send first, if any option was accepted.
    pub oack: Option<Vec<u8>>,
}

impl Params {
    fn rto(&self, retry: u32) -> Duration {
        self.timeout
            .unwrap_or_else(|| (Duration::from_secs(1) * (1 << retry.min(4))).min(MAX_DEFAULT_RTO))
    }
}

/// Why a transfer ended early.
#[derive(Debug)]
pub enum Failure {
    /// The client sent an ERROR packet (`during_oack`: in answer to our OACK, which is how
    /// PXE ROMs end their "tsize" probe).
    Client {
        code: u16,
        message: String,
        during_oack: bool,
    },
    /// No acknowledgement after every retry; `last_sent` when only the final ACK was missing.
    TimedOut { last_sent: bool },
    /// The client's port is closed (ICMP port unreachable).
    Gone,
    /// wulfd is shutting down, or the client started over with a new request.
    Cancelled,
    /// Reading the file failed.
    Read(io::Error),
    /// The socket failed.
    Net(io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Client { code, message, .. } => {
                write!(f, "client aborted with error {code} '{message}'")
            }
            Failure::TimedOut { last_sent: true } => {
                write!(f, "timed out waiting for the last acknowledgement")
            }
            Failure::TimedOut { last_sent: false } => write!(f, "client stopped answering"),
            Failure::Gone => write!(f, "client port unreachable"),
            Failure::Cancelled => write!(f, "cancelled"),
            Failure::Read(e) => write!(f, "read error: {e}"),
            Failure::Net(e) => write!(f, "network error: {e}"),
        }
    }
}

fn net_err(e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        Failure::Gone
    } else {
        Failure::Net(e)
    }
}

/// The next client packet before `deadline` (None on timeout).
async fn recv_until(
    sock: &UdpSocket,
    buf: &mut [u8],
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<Option<Reply>, Failure> {
    tokio::select! {
        _ = cancel.cancelled() => Err(Failure::Cancelled),
        _ = tokio::time::sleep_until(deadline) => Ok(None),
        r = sock.recv(buf) => match r {
            Ok(n) => Ok(Some(parse_reply(&buf[..n]))),
            Err(e) => Err(net_err(e)),
        },
    }
}

/// Send the file on `sock`, connected to the client. `progressed` is set once the client has
/// answered anything. Returns the data bytes acknowledged.
pub async fn send(
    sock: &UdpSocket,
    source: Source,
    p: &Params,
    cancel: &CancellationToken,
    progressed: &AtomicBool,
) -> Result<u64, Failure> {
    let mut buf = vec![0u8; 1024];
    if let Some(oack) = &p.oack {
        let mut retry = 0;
        'oack: loop {
            sock.send(oack).await.map_err(net_err)?;
            let deadline = Instant::now() + p.rto(retry);
            loop {
                match recv_until(sock, &mut buf, deadline, cancel).await? {
                    None => {
                        retry += 1;
                        if retry > MAX_RETRIES {
                            return Err(Failure::TimedOut { last_sent: false });
                        }
                        continue 'oack;
                    }
                    Some(Reply::Ack(0)) => break 'oack,
                    Some(Reply::Error { code, message }) => {
                        // The client is done with this transfer: a repeated request from it
                        // is a new one.
                        progressed.store(true, Ordering::Relaxed);
                        return Err(Failure::Client {
                            code,
                            message,
                            during_oack: true,
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        progressed.store(true, Ordering::Relaxed);
    }

    let ws = p.windowsize.max(1);
    let read_ahead = ws.max((READ_AHEAD_BYTES / p.blksize).clamp(1, MAX_READ_AHEAD_BLOCKS));
    // Blocks read and not yet acknowledged, starting with sequence number `base`; the first
    // `ws` of them are in flight.
    let mut buffered: VecDeque<Vec<u8>> = VecDeque::new();
    let mut base: u64 = 1;
    let mut eof = false;
    let mut source = Some(source);
    let mut retry = 0;
    let mut dup_resent = false;
    let mut acked_bytes: u64 = 0;
    loop {
        if !eof && buffered.len() < ws {
            let first = base + buffered.len() as u64;
            let want = read_ahead - buffered.len();
            let Some(mut src) = source.take() else {
                return Err(Failure::Read(io::Error::other("source lost")));
            };
            let blksize = p.blksize;
            let (src, blocks) = tokio::task::spawn_blocking(move || {
                let r = src.read_blocks(first, want, blksize);
                (src, r)
            })
            .await
            .map_err(|e| Failure::Read(io::Error::other(e)))?;
            source = Some(src);
            for pkt in blocks.map_err(Failure::Read)? {
                if pkt.len() - 4 < p.blksize {
                    eof = true;
                }
                buffered.push_back(pkt);
            }
        }
        let in_flight = ws.min(buffered.len());
        for pkt in buffered.iter().take(in_flight) {
            sock.send(pkt).await.map_err(net_err)?;
        }
        let last_in_flight = base + in_flight as u64 - 1;
        let deadline = Instant::now() + p.rto(retry);
        loop {
            let Some(reply) = recv_until(sock, &mut buf, deadline, cancel).await? else {
                retry += 1;
                if retry > MAX_RETRIES {
                    return Err(Failure::TimedOut {
                        last_sent: eof && in_flight == buffered.len(),
                    });
                }
                break; // send the window again
            };
            match reply {
                Reply::Ack(block) => {
                    // Which block in flight (or the one before them) this acknowledges; a
                    // window is far smaller than 65536 blocks, so at most one matches.
                    let acked = (base - 1..=last_in_flight).find(|s| wire_block(*s) == block);
                    match acked {
                        Some(seq) if seq >= base => {
                            for pkt in buffered.drain(..(seq - base + 1) as usize) {
                                acked_bytes += (pkt.len() - 4) as u64;
                            }
                            base = seq + 1;
                            retry = 0;
                            dup_resent = false;
                            progressed.store(true, Ordering::Relaxed);
                            if eof && buffered.is_empty() {
                                return Ok(acked_bytes);
                            }
                            break; // next window, from the block after the acknowledged one
                        }
                        // A repeated ACK of the block before the window. In lock-step it is a
                        // late duplicate: answering it would double every later block
                        // (the Sorcerer's Apprentice bug), so it is ignored. With a window
                        // it reports a gap: resend once, and wait for progress after that.
                        Some(_) if ws > 1 && !dup_resent => {
                            dup_resent = true;
                            break;
                        }
                        _ => {}
                    }
                }
                Reply::Error { code, message } => {
                    progressed.store(true, Ordering::Relaxed);
                    return Err(Failure::Client {
                        code,
                        message,
                        during_oack: false,
                    });
                }
                Reply::Other => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tftp::packet::{OP_ACK, OP_DATA, OP_OACK};

    fn source(data: &[u8], mode: Mode) -> Source {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, data).unwrap();
        std::io::Seek::rewind(&mut f).unwrap();
        Source::new(f, mode)
    }

    fn all_blocks(mut s: Source, blksize: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut seq = 1;
        loop {
            let b = s.read_blocks(seq, 3, blksize).unwrap();
            seq += b.len() as u64;
            let done = b.last().map(|p| p.len() - 4 < blksize).unwrap_or(true);
            out.extend(b);
            if done {
                return out;
            }
        }
    }

    #[test]
    fn splits_into_blocks_with_a_final_short_one() {
        let data: Vec<u8> = (0..20u8).collect();
        let b = all_blocks(source(&data, Mode::Octet), 8);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0], [&[0, 3, 0, 1][..], &data[..8]].concat());
        assert_eq!(b[2], [&[0, 3, 0, 3][..], &data[16..]].concat());
        // An exact multiple ends with an empty block.
        let b = all_blocks(source(&data[..16], Mode::Octet), 8);
        assert_eq!(b.len(), 3);
        assert_eq!(b[2], vec![0, 3, 0, 3]);
        let b = all_blocks(source(b"", Mode::Octet), 8);
        assert_eq!(b, vec![vec![0, 3, 0, 1]]);
    }

    #[test]
    fn converts_netascii() {
        let b = all_blocks(source(b"ab\ncd\r\nxyz\n", Mode::Netascii), 4);
        let data: Vec<u8> = b.iter().flat_map(|p| p[4..].to_vec()).collect();
        assert_eq!(data, b"ab\r\ncd\r\0\r\nxyz\r\n");
        assert!(b.iter().take(b.len() - 1).all(|p| p.len() == 8));
    }

    /// A client for the tests: request over `sock` already connected to the transfer.
    async fn serve_pair(
        data: Vec<u8>,
        p: Params,
    ) -> (
        UdpSocket,
        tokio::task::JoinHandle<Result<u64, Failure>>,
        CancellationToken,
    ) {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        server.connect(client.local_addr().unwrap()).await.unwrap();
        client.connect(server.local_addr().unwrap()).await.unwrap();
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let task = tokio::spawn(async move {
            let src = source(&data, Mode::Octet);
            send(&server, src, &p, &c, &AtomicBool::new(false)).await
        });
        (client, task, cancel)
    }

    fn ack(block: u16) -> [u8; 4] {
        let b = block.to_be_bytes();
        [0, OP_ACK as u8, b[0], b[1]]
    }

    async fn recv(sock: &UdpSocket) -> Vec<u8> {
        let mut buf = vec![0u8; 70000];
        let n = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf))
            .await
            .expect("no packet from the server")
            .unwrap();
        buf.truncate(n);
        buf
    }

    /// Receive a whole file: windowed when `ws` > 1 (ACK the last block of each window).
    async fn fetch(client: &UdpSocket, blksize: usize, ws: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut expect: u16 = 1;
        let mut in_window = 0;
        loop {
            let pkt = recv(client).await;
            assert_eq!(pkt[..2], [0, OP_DATA as u8]);
            let block = u16::from_be_bytes([pkt[2], pkt[3]]);
            assert_eq!(block, expect, "out of order");
            out.extend_from_slice(&pkt[4..]);
            expect = expect.wrapping_add(1);
            in_window += 1;
            let last = pkt.len() - 4 < blksize;
            if last || in_window == ws {
                client.send(&ack(block)).await.unwrap();
                in_window = 0;
            }
            if last {
                return out;
            }
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[tokio::test]
    async fn block_numbers_roll_over() {
        // 70000 blocks of 8 bytes: numbers wrap from 65535 to 0.
        let data = pattern(8 * 70_000 + 3);
        for ws in [1, 16] {
            let p = Params {
                blksize: 8,
                windowsize: ws,
                timeout: None,
                oack: None,
            };
            let (client, task, _c) = serve_pair(data.clone(), p).await;
            let got = fetch(&client, 8, ws).await;
            assert_eq!(got.len(), data.len());
            assert!(got == data, "ws {ws}: data differs");
            assert_eq!(task.await.unwrap().unwrap(), data.len() as u64);
        }
    }

    #[tokio::test]
    async fn ignores_duplicate_acks_in_lock_step() {
        let data = pattern(512 * 3 + 1);
        let p = Params {
            blksize: 512,
            windowsize: 1,
            timeout: None,
            oack: None,
        };
        let (client, task, _c) = serve_pair(data.clone(), p).await;
        let mut got = Vec::new();
        for block in 1..=4u16 {
            let pkt = recv(&client).await;
            assert_eq!(u16::from_be_bytes([pkt[2], pkt[3]]), block);
            got.extend_from_slice(&pkt[4..]);
            // Every ACK twice: the duplicate must not trigger a second copy of the next block.
            client.send(&ack(block)).await.unwrap();
            client.send(&ack(block)).await.unwrap();
        }
        assert_eq!(got, data);
        assert_eq!(task.await.unwrap().unwrap(), data.len() as u64);
        let mut buf = [0u8; 600];
        let extra = tokio::time::timeout(Duration::from_millis(300), client.recv(&mut buf)).await;
        assert!(extra.is_err(), "the server sent more after the last ACK");
    }

    #[tokio::test]
    async fn retransmits_then_gives_up() {
        let p = Params {
            blksize: 512,
            windowsize: 1,
            timeout: Some(Duration::from_millis(50)),
            oack: Some(vec![0, OP_OACK as u8, b't', 0, b'1', 0]),
        };
        let (client, task, _c) = serve_pair(pattern(100), p).await;
        // The OACK, then its retransmissions, then the server gives up.
        for _ in 0..=MAX_RETRIES {
            let pkt = recv(&client).await;
            assert_eq!(pkt[..2], [0, OP_OACK as u8]);
        }
        let r = task.await.unwrap();
        assert!(matches!(r, Err(Failure::TimedOut { .. })), "{r:?}");
    }

    #[tokio::test]
    async fn resends_a_lost_block_and_honours_a_gap_report() {
        let data = pattern(512 * 10);
        let p = Params {
            blksize: 512,
            windowsize: 4,
            timeout: Some(Duration::from_secs(1)),
            oack: None,
        };
        let (client, task, _c) = serve_pair(data.clone(), p).await;
        // First window: blocks 1-4. Pretend block 3 was lost: ACK 2.
        let w: Vec<Vec<u8>> = [
            recv(&client).await,
            recv(&client).await,
            recv(&client).await,
            recv(&client).await,
        ]
        .into();
        assert_eq!(w[3][3], 4);
        client.send(&ack(2)).await.unwrap();
        // The next window starts at 3.
        let pkt = recv(&client).await;
        assert_eq!(pkt[3], 3);
        for _ in 0..3 {
            recv(&client).await;
        }
        // A gap report (ACK of the block before the window): the window is sent again.
        client.send(&ack(2)).await.unwrap();
        assert_eq!(recv(&client).await[3], 3);
        for _ in 0..3 {
            recv(&client).await;
        }
        client.send(&ack(6)).await.unwrap();
        // 7..10 and the empty last block 11 (4 in the window, then 1).
        let mut rest = Vec::new();
        for _ in 0..4 {
            rest.push(recv(&client).await);
        }
        assert_eq!(rest[0][3], 7);
        client.send(&ack(10)).await.unwrap();
        let last = recv(&client).await;
        assert_eq!(last, vec![0, 3, 0, 11]);
        client.send(&ack(11)).await.unwrap();
        assert_eq!(task.await.unwrap().unwrap(), data.len() as u64);
    }

    #[tokio::test]
    async fn stops_on_client_error_and_cancellation() {
        let p = Params {
            blksize: 512,
            windowsize: 1,
            timeout: None,
            oack: None,
        };
        let (client, task, _c) = serve_pair(pattern(5000), p.clone()).await;
        recv(&client).await;
        client.send(b"\0\x05\0\x00stop\0").await.unwrap();
        let r = task.await.unwrap();
        assert!(
            matches!(&r, Err(Failure::Client { code: 0, message, during_oack: false }) if message == "stop"),
            "{r:?}"
        );
        let (client, task, cancel) = serve_pair(pattern(5000), p).await;
        recv(&client).await;
        cancel.cancel();
        let r = tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(r, Err(Failure::Cancelled)), "{r:?}");
    }
}
