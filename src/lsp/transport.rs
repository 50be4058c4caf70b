//! The wire: LSP messages over standard input and output, framed by `Content-Length`.
//!
//! lsp-server's own stdio transport sizes its buffer by whatever `Content-Length` says and
//! ends the server on one malformed message; this one bounds a message to
//! [`MAX_MESSAGE_BYTES`] (a larger one is read past in pieces and reported) and reports a
//! message that is not JSON-RPC without stopping. Owns: framing. Never: interprets a
//! message.

use std::io::{self, BufRead, Read, Write};
use std::thread;

use crossbeam_channel::{Receiver, Sender, bounded};
use lsp_server::Message;

/// The largest message read: a rules file may hold 8 MiB, which JSON escaping can grow.
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The longest header line read.
const MAX_HEADER_LINE: usize = 1024;

/// The reader and writer threads of a stdio connection.
pub(crate) struct Threads {
    reader: thread::JoinHandle<()>,
    writer: thread::JoinHandle<io::Result<()>>,
}

impl Threads {
    /// Waits for both threads: the writer ends when every sender is dropped.
    pub(crate) fn join(self) -> io::Result<()> {
        let written = self
            .writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the writer thread panicked")));
        // The reader may still wait on standard input; it ends with the process.
        drop(self.reader);
        written
    }
}

/// Channels to and from the editor over standard input and output.
pub(crate) fn stdio() -> io::Result<(Sender<Message>, Receiver<Message>, Threads)> {
    let (to_editor, outgoing) = bounded::<Message>(16);
    let (incoming, from_editor) = bounded::<Message>(0);
    let writer = thread::Builder::new()
        .name(String::from("lsp-writer"))
        .spawn(move || {
            let stdout = io::stdout();
            let mut out = stdout.lock();
            for msg in outgoing {
                msg.write(&mut out)?;
            }
            out.flush()
        })?;
    let reader = thread::Builder::new()
        .name(String::from("lsp-reader"))
        .spawn(move || {
            let stdin = io::stdin();
            let mut input = stdin.lock();
            read_all(&mut input, &incoming);
        })?;
    Ok((to_editor, from_editor, Threads { reader, writer }))
}

/// Reads messages until the input ends, an `exit` arrives, or the server stops listening.
pub(crate) fn read_all(input: &mut impl BufRead, incoming: &Sender<Message>) {
    loop {
        match read_message(input) {
            Ok(Some(Frame::Message(msg))) => {
                let exit = matches!(&msg, Message::Notification(n) if n.method == "exit");
                if incoming.send(msg).is_err() || exit {
                    return;
                }
            }
            Ok(Some(Frame::Skipped(why))) => eprintln!("switchyard lsp: {why}"),
            Ok(None) => return,
            Err(e) => {
                eprintln!("switchyard lsp: cannot read from the editor: {e}");
                return;
            }
        }
    }
}

/// One frame of input.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A message.
    Message(Message),
    /// A frame that was read past, and why.
    Skipped(String),
}

/// Reads one frame: `Ok(None)` at the end of the input.
pub(crate) fn read_message(input: &mut impl BufRead) -> io::Result<Option<Frame>> {
    let mut length: Option<usize> = None;
    let mut lines = 0;
    loop {
        let mut line = Vec::new();
        let n = input
            .by_ref()
            .take(MAX_HEADER_LINE as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(None);
        }
        if !line.ends_with(b"\n") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a header line longer than 1 KiB",
            ));
        }
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if lines == 0 {
                continue;
            }
            break;
        }
        lines += 1;
        if lines > 32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more than 32 header lines",
            ));
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok();
        }
    }
    let Some(length) = length else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a message without a valid Content-Length",
        ));
    };
    if length > MAX_MESSAGE_BYTES {
        io::copy(&mut input.by_ref().take(length as u64), &mut io::sink())?;
        return Ok(Some(Frame::Skipped(format!(
            "a message of {length} bytes was ignored: the limit is {} MiB",
            MAX_MESSAGE_BYTES >> 20
        ))));
    }
    let mut body = vec![0; length];
    input.read_exact(&mut body)?;
    Ok(Some(match serde_json::from_slice::<Message>(&body) {
        Ok(msg) => Frame::Message(msg),
        Err(e) => Frame::Skipped(format!("a message that is not JSON-RPC was ignored: {e}")),
    }))
}
