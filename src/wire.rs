//! Problem bodies for the errors the HTTP/1 layer answers by itself.
//!
//! actix-http answers a request it cannot parse without calling the application: `431` for a
//! head over 128 KiB or with more than 96 headers, `400` for a malformed request line or header,
//! or a URL over 65,534 bytes (10,000 query parameters, a 100 KB path segment), `408` for a head
//! that does not arrive within the client request timeout. It has no setting or hook for their
//! bodies: each is a head with `content-length: 0`, the last bytes written on its connection
//! (which is then closed). [`ProblemIo`] wraps each accepted connection and, when the bytes
//! written end with such a head (status 4xx or 5xx, empty body), writes a problem body (RFC 9457)
//! in its place. The application never answers so: its errors all carry problem bodies
//! (`startup::into_problem` sees to it). On every other write it costs one comparison of the
//! last four bytes.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose HTTP-layer error answers get problem bodies (see the module).
pub struct ProblemIo<T> {
    inner: T,
    /// The answer written instead of the caller's last head, and how much of it is written.
    replacing: Option<(Vec<u8>, usize)>,
}

impl<T> ProblemIo<T> {
    pub fn new(inner: T) -> Self {
        Self { inner, replacing: None }
    }
}

/// Where the bare error head at the end of `buf` begins, if it ends with one.
fn bare_error_head(buf: &[u8]) -> Option<usize> {
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    // the head is short: a status line, content-length, connection and date
    let from = buf.len().saturating_sub(256);
    let start = from + find_last(&buf[from..], b"HTTP/1.")?;
    let head = &buf[start..];
    let status = head.get(9)?;
    let bare = matches!(status, b'4' | b'5')
        && contains(head, b"\r\ncontent-length: 0\r\n")
        && head.len() >= 4
        && !contains(&head[..head.len() - 4], b"\r\n\r\n");
    bare.then_some(start)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// The answer that replaces `head`: the same head with a problem body and a request id (new:
/// the request could not be read, so it named none), in `X-Request-Id` and the body.
fn with_problem_body(head: &[u8]) -> Vec<u8> {
    let request_id = uuid::Uuid::now_v7().to_string();
    let code: u16 = std::str::from_utf8(&head[9..12]).ok().and_then(|c| c.parse().ok()).unwrap_or(400);
    let status = actix_web::http::StatusCode::from_u16(code).unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    let (slug, detail) = match code {
        431 => (
            "request-header-fields-too-large",
            "the request head is larger than 128 KiB or has more than 96 header fields",
        ),
        408 => ("request-timeout", "the request head did not arrive in time"),
        400 => (
            "malformed-request",
            "the request line or a header field is malformed, or the URL is longer than 65,534 bytes",
        ),
        c if c >= 500 => ("internal", "the connection failed"),
        _ => ("http-error", "the request cannot be read"),
    };
    let problem = crate::error::Problem {
        type_uri: format!("{}{slug}", crate::error::PROBLEM_BASE),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: code,
        detail: detail.to_owned(),
        errors: Vec::new(),
        request_id: Some(request_id.clone()),
    };
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let head = String::from_utf8_lossy(head).replacen(
        "\r\ncontent-length: 0\r\n",
        &format!(
            "\r\ncontent-type: application/problem+json\r\nx-request-id: {request_id}\r\ncontent-length: {}\r\n",
            body.len()
        ),
        1,
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    out
}

impl<T: AsyncRead + Unpin> AsyncRead for ProblemIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ProblemIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none() {
            match bare_error_head(buf) {
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
                // what comes before the head (answers to earlier pipelined requests) as it is
                Some(start) if start > 0 => return Pin::new(&mut this.inner).poll_write(cx, &buf[..start]),
                Some(_) => this.replacing = Some((with_problem_body(buf), 0)),
            }
        }
        let (answer, written) = this.replacing.as_mut().expect("set above");
        while *written < answer.len() {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &answer[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        // the caller's head counts as written once its replacement is
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\ndate: Sat, 05 Dec 2026 02:55:19 GMT\r\n\r\n";

    #[test]
    fn only_a_bare_closing_error_head_at_the_end_is_replaced() {
        assert_eq!(bare_error_head(BARE), Some(0));
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        let pipelined = [&ok[..], BARE].concat();
        assert_eq!(bare_error_head(&pipelined), Some(ok.len()));
        // after a pipelined answer, actix leaves `connection: close` out
        assert_eq!(bare_error_head(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"), Some(0));
        // a 204, a HEAD answer, an error with a body, a 200 that closes: left alone
        assert_eq!(bare_error_head(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"), None);
        assert_eq!(bare_error_head(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"), None);
        assert_eq!(bare_error_head(b"HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\nconnection: close\r\n\r\n"), None);
        let answer = String::from_utf8(with_problem_body(BARE)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(head.contains("\r\ncontent-type: application/problem+json\r\n"), "{head}");
        assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())), "{head}");
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], 431);
        let id = problem["request_id"].as_str().unwrap();
        assert!(head.contains(&format!("\r\nx-request-id: {id}\r\n")), "{head}");
    }
}
