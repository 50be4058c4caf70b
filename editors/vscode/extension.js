// Starts `switchyard lsp` for `.rules` files: the binary does all the work (diagnostics,
// quick fixes, hover, definition, references, completion, symbols, formatting).
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("switchyard").get("path") || "switchyard";
  const server = { command, args: ["lsp"] };
  client = new LanguageClient(
    "switchyard",
    "switchyard rules",
    { run: server, debug: server },
    {
      documentSelector: [{ scheme: "file", language: "switchyard" }, { scheme: "untitled", language: "switchyard" }],
      // Another file of a rules folder changed on disk: its folder is checked again.
      synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher("**/*.rules") },
    },
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
