//! A minimal Server-Sent Events reader for the tests.

use futures::StreamExt;
use serde_json::Value as J;
use std::time::Duration;

/// A minimal SSE reader over a reqwest byte stream.
pub struct Sse {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
    /// The `hello` the stream opened with.
    pub hello: Option<Frame>,
    /// Silence after which [`Sse::next`] gives up (5 s).
    pub patience: Duration,
}

#[derive(Debug, Clone)]
pub struct Frame {
    pub event: String,
    pub id: Option<i64>,
    pub data: J,
}

impl Sse {
    pub async fn open(srv: &super::TestServer, last: Option<i64>) -> Sse {
        let mut req = srv.client.get(format!("{}/api/live", srv.base));
        if let Some(l) = last {
            req = req.header("last-event-id", l.to_string());
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let mut s = Sse {
            stream: Box::pin(r.bytes_stream()),
            buf: String::new(),
            hello: None,
            patience: Duration::from_secs(5),
        };
        let hello = s.next().await.expect("hello");
        assert_eq!(hello.event, "hello");
        s.hello = Some(hello);
        s
    }

    /// The next frame, or None after `patience` of silence or at the end.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::from("message"), None, String::new());
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a comment (heartbeat)
                }
                return Some(Frame {
                    event,
                    id,
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            match tokio::time::timeout(self.patience, self.stream.next()).await {
                Ok(Some(Ok(b))) => self.buf.push_str(&String::from_utf8_lossy(&b)),
                _ => return None,
            }
        }
    }

    /// Frames until one of `event` kind satisfies `pred`.
    pub async fn until(&mut self, event: &str, pred: impl Fn(&Frame) -> bool) -> Frame {
        loop {
            let f = self
                .next()
                .await
                .unwrap_or_else(|| panic!("stream ended before a matching {event}"));
            if f.event == event && pred(&f) {
                return f;
            }
        }
    }
}
