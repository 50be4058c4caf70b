//! `switchyard lsp`: a Language Server Protocol server over standard input and output, on
//! the library code `switchyard check` and `switchyard fmt` use.
//!
//! One thread answers in order: a change marks its folder, and the folder is checked again
//! once no message waits (so a burst of keystrokes costs one check), and before any
//! request is answered (so every answer reads the text the editor holds). What the
//! editor gets is in docs/editors.md.
//!
//! Owns: the protocol (capabilities, dispatch, publishing). Never: panics at the editor
//! (a request whose handler fails is answered with an error), or reads more than a
//! message's limit.

mod docs;
mod features;
mod symbols;
mod text;
mod transport;
mod workspace;

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crossbeam_channel::TryRecvError;
use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types::{
    CodeActionKind, CodeActionOptions, CodeActionParams, CodeActionProviderCapability,
    CompletionOptions, CompletionParams, CompletionResponse, DidChangeTextDocumentParams,
    DidChangeWatchedFilesParams, DidCloseTextDocumentParams, DidOpenTextDocumentParams,
    DidSaveTextDocumentParams, DocumentFormattingParams, DocumentSymbolParams,
    DocumentSymbolResponse, GotoDefinitionParams, GotoDefinitionResponse, HoverParams,
    HoverProviderCapability, InitializeParams, OneOf, PositionEncodingKind,
    PublishDiagnosticsParams, ReferenceParams, SaveOptions, ServerCapabilities,
    TextDocumentSyncCapability, TextDocumentSyncKind, TextDocumentSyncOptions,
    TextDocumentSyncSaveOptions,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use text::{Encoding, LineIndex};
use workspace::{Doc, Workspace, parse_uri};

/// Serves the editor on standard input and output until it says `exit` or closes them.
pub fn serve_stdio() -> io::Result<()> {
    let (sender, receiver, threads) = transport::stdio()?;
    let conn = Connection { sender, receiver };
    let served = serve(&conn);
    drop(conn);
    threads.join()?;
    served
}

fn protocol(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// The server's side of one connection: the handshake, then messages until `exit`.
pub(crate) fn serve(conn: &Connection) -> io::Result<()> {
    let (id, params) = conn.initialize_start().map_err(protocol)?;
    let params: InitializeParams = serde_json::from_value(params).unwrap_or_default();
    let utf8 = params
        .capabilities
        .general
        .as_ref()
        .and_then(|g| g.position_encodings.as_ref())
        .is_some_and(|e| e.contains(&PositionEncodingKind::UTF8));
    let enc = if utf8 {
        Encoding::Utf8
    } else {
        Encoding::Utf16
    };
    let capabilities = ServerCapabilities {
        position_encoding: Some(if utf8 {
            PositionEncodingKind::UTF8
        } else {
            PositionEncodingKind::UTF16
        }),
        text_document_sync: Some(TextDocumentSyncCapability::Options(
            TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(TextDocumentSyncKind::INCREMENTAL),
                save: Some(TextDocumentSyncSaveOptions::SaveOptions(SaveOptions {
                    include_text: Some(false),
                })),
                ..Default::default()
            },
        )),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec![" ".into(), "@".into(), "\"".into()]),
            ..Default::default()
        }),
        document_symbol_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        code_action_provider: Some(CodeActionProviderCapability::Options(CodeActionOptions {
            code_action_kinds: Some(vec![CodeActionKind::QUICKFIX]),
            ..Default::default()
        })),
        ..Default::default()
    };
    let result = serde_json::json!({
        "capabilities": capabilities,
        "serverInfo": {"name": "switchyard", "version": env!("CARGO_PKG_VERSION")},
    });
    conn.initialize_finish(id, result).map_err(protocol)?;

    let mut ws = Workspace::new(enc);
    let mut shutting_down = false;
    loop {
        let msg = if ws.has_dirty() {
            match conn.receiver.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => {
                    publish(conn, &mut ws)?;
                    continue;
                }
                Err(TryRecvError::Disconnected) => return Ok(()),
            }
        } else {
            match conn.receiver.recv() {
                Ok(m) => m,
                Err(_) => return Ok(()),
            }
        };
        match msg {
            Message::Request(req) if shutting_down => {
                let resp = Response::new_err(
                    req.id,
                    ErrorCode::InvalidRequest as i32,
                    String::from("the server is shutting down"),
                );
                send(conn, resp.into())?;
            }
            Message::Request(req) if req.method == "shutdown" => {
                shutting_down = true;
                send(conn, Response::new_ok(req.id, ()).into())?;
            }
            Message::Request(req) => {
                publish(conn, &mut ws)?;
                let id = req.id.clone();
                let method = req.method.clone();
                let resp =
                    catch_unwind(AssertUnwindSafe(|| answer(&mut ws, req))).unwrap_or_else(|_| {
                        Response::new_err(
                            id,
                            ErrorCode::InternalError as i32,
                            format!("switchyard lsp failed to answer {method}; please report it"),
                        )
                    });
                send(conn, resp.into())?;
            }
            // The protocol's rule: `exit` without `shutdown` first is a failure (exit 1).
            Message::Notification(n) if n.method == "exit" => {
                return match shutting_down {
                    true => Ok(()),
                    false => Err(io::Error::other(
                        "the editor said `exit` without `shutdown`",
                    )),
                };
            }
            Message::Notification(n) => {
                // A notification has no answer: one that cannot be read is left alone.
                let _ = catch_unwind(AssertUnwindSafe(|| notified(&mut ws, n)));
            }
            Message::Response(_) => {}
        }
    }
}

fn send(conn: &Connection, msg: Message) -> io::Result<()> {
    conn.sender
        .send(msg)
        .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the editor is gone"))
}

/// Checks the marked folders again and publishes what changed.
fn publish(conn: &Connection, ws: &mut Workspace) -> io::Result<()> {
    for (uri, version, diagnostics) in ws.refresh() {
        let Some(uri) = parse_uri(&uri) else { continue };
        let params = PublishDiagnosticsParams {
            uri,
            diagnostics,
            version,
        };
        send(
            conn,
            Notification::new(String::from("textDocument/publishDiagnostics"), params).into(),
        )?;
    }
    Ok(())
}

/// Keeps the documents as the editor holds them.
fn notified(ws: &mut Workspace, n: Notification) {
    match n.method.as_str() {
        "textDocument/didOpen" => {
            if let Some(p) = params::<DidOpenTextDocumentParams>(n.params) {
                let uri = p.text_document.uri.as_str().to_owned();
                ws.docs.insert(
                    uri.clone(),
                    Doc {
                        text: p.text_document.text.into(),
                        version: p.text_document.version,
                    },
                );
                ws.touch(&uri);
            }
        }
        "textDocument/didChange" => {
            if let Some(p) = params::<DidChangeTextDocumentParams>(n.params) {
                let uri = p.text_document.uri.as_str().to_owned();
                let enc = ws.enc;
                if let Some(doc) = ws.docs.get_mut(&uri) {
                    let mut text = doc.text.to_string();
                    for change in p.content_changes {
                        match change.range {
                            Some(r) => {
                                let lines = LineIndex::new(&text);
                                let start = lines.offset(&text, r.start, enc);
                                let end = lines.offset(&text, r.end, enc).max(start);
                                text.replace_range(start..end, &change.text);
                            }
                            None => text = change.text,
                        }
                    }
                    doc.text = text.into();
                    doc.version = p.text_document.version;
                    ws.touch(&uri);
                }
            }
        }
        "textDocument/didClose" => {
            if let Some(p) = params::<DidCloseTextDocumentParams>(n.params) {
                let uri = p.text_document.uri.as_str().to_owned();
                ws.docs.remove(&uri);
                ws.touch(&uri);
            }
        }
        "textDocument/didSave" => {
            if let Some(p) = params::<DidSaveTextDocumentParams>(n.params) {
                ws.touch(p.text_document.uri.as_str());
            }
        }
        "workspace/didChangeWatchedFiles" => {
            if let Some(p) = params::<DidChangeWatchedFilesParams>(n.params) {
                for change in p.changes {
                    ws.touch(change.uri.as_str());
                }
            }
        }
        _ => {}
    }
}

fn params<P: DeserializeOwned>(value: serde_json::Value) -> Option<P> {
    serde_json::from_value(value).ok()
}

/// Answers one request.
fn answer(ws: &mut Workspace, req: Request) -> Response {
    let id = req.id.clone();
    let bad = |id, e: serde_json::Error| {
        Response::new_err(id, ErrorCode::InvalidParams as i32, e.to_string())
    };
    fn ok<R: Serialize>(id: lsp_server::RequestId, r: R) -> Response {
        Response::new_ok(id, r)
    }
    match req.method.as_str() {
        "textDocument/hover" => match serde_json::from_value::<HoverParams>(req.params) {
            Ok(p) => {
                let t = p.text_document_position_params;
                ok(
                    id,
                    features::hover(ws, t.text_document.uri.as_str(), t.position),
                )
            }
            Err(e) => bad(id, e),
        },
        "textDocument/definition" => {
            match serde_json::from_value::<GotoDefinitionParams>(req.params) {
                Ok(p) => {
                    let t = p.text_document_position_params;
                    let locs = features::definition(ws, t.text_document.uri.as_str(), t.position);
                    ok(id, GotoDefinitionResponse::Array(locs))
                }
                Err(e) => bad(id, e),
            }
        }
        "textDocument/references" => match serde_json::from_value::<ReferenceParams>(req.params) {
            Ok(p) => {
                let t = p.text_document_position;
                ok(
                    id,
                    features::references(
                        ws,
                        t.text_document.uri.as_str(),
                        t.position,
                        p.context.include_declaration,
                    ),
                )
            }
            Err(e) => bad(id, e),
        },
        "textDocument/completion" => match serde_json::from_value::<CompletionParams>(req.params) {
            Ok(p) => {
                let t = p.text_document_position;
                let items = features::completion(ws, t.text_document.uri.as_str(), t.position);
                ok(id, CompletionResponse::Array(items))
            }
            Err(e) => bad(id, e),
        },
        "textDocument/documentSymbol" => {
            match serde_json::from_value::<DocumentSymbolParams>(req.params) {
                Ok(p) => ok(
                    id,
                    DocumentSymbolResponse::Nested(features::symbols(
                        ws,
                        p.text_document.uri.as_str(),
                    )),
                ),
                Err(e) => bad(id, e),
            }
        }
        "textDocument/formatting" => {
            match serde_json::from_value::<DocumentFormattingParams>(req.params) {
                Ok(p) => ok(id, features::format(ws, p.text_document.uri.as_str())),
                Err(e) => bad(id, e),
            }
        }
        "textDocument/codeAction" => match serde_json::from_value::<CodeActionParams>(req.params) {
            Ok(p) => ok(
                id,
                features::code_actions(ws, p.text_document.uri.as_str(), p.range),
            ),
            Err(e) => bad(id, e),
        },
        other => Response::new_err(
            id,
            ErrorCode::MethodNotFound as i32,
            format!("switchyard lsp does not answer {other}"),
        ),
    }
}
