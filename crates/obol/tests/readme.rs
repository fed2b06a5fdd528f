//! Goal: README.md cannot drift from the binary. Every `sh` block runs as written, in order, as
//! one terminal session of a newcomer on a fresh directory; every `obol` line of a reference
//! block (`text`, or `sh norun`) names real subcommands and flags; and every `--help` of the
//! command tree answers.
//! Method: read README.md's fenced blocks. The block that starts the server (`... serve --demo`)
//! runs in the background on a free port (its address replaces `127.0.0.1:8402` and
//! `localhost:8402` in the blocks that follow, and `OBOL_API_KEY` holds the key it printed);
//! the other `sh` blocks run in one `bash -e -o pipefail` with `obol` on the PATH, and none of
//! their output may be an error (an RFC 9457 problem document, or `error:` from the CLI).
//! `sh norun` blocks are the ones that cannot run inside the suite: the suite itself, and
//! commands that each have a test of their own (the examples); their `obol` lines are checked
//! like a reference's, their scripts and example binaries must exist.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

struct Block {
    info: String,
    text: String,
    line: usize,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn blocks() -> Vec<Block> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (n, line) in readme.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block { info: info.trim().to_string(), text: String::new(), line: n + 1 })
            }
            (Some(_), Some(_)) => blocks.extend(open.take()),
            (Some(block), None) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "README.md has an unclosed code block");
    blocks
}

fn obol() -> Command {
    Command::new(env!("CARGO_BIN_EXE_obol"))
}

/// `obol PATH --help`, memoized.
fn help(cache: &mut BTreeMap<Vec<String>, String>, path: &[String]) -> String {
    if let Some(text) = cache.get(path) {
        return text.clone();
    }
    let output = obol().args(path).arg("--help").output().unwrap();
    assert!(
        output.status.success(),
        "obol {} --help failed: {}",
        path.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    cache.insert(path.to_vec(), text.clone());
    text
}

/// The subcommands a help text lists.
fn subcommands(help: &str) -> Vec<String> {
    let Some(start) = help.find("Commands:\n") else { return Vec::new() };
    help[start + "Commands:\n".len()..]
        .lines()
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Joins `\`-continued lines and drops comments.
fn command_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let (line, continued) = match raw.trim_end().strip_suffix('\\') {
            Some(rest) => (rest, true),
            None => (raw, false),
        };
        current.push_str(line.trim());
        current.push(' ');
        if !continued {
            let code = match current.find(" #") {
                Some(at) => current[..at].to_string(),
                None => current.clone(),
            };
            if !code.trim().is_empty() && !code.trim_start().starts_with('#') {
                lines.push(code.trim().to_string());
            }
            current.clear();
        }
    }
    lines
}

/// The commands of a shell line: `$(...)` substitutions on their own, the rest split at
/// ` && `, ` | ` and `;`.
fn shell_commands(line: &str) -> Vec<String> {
    let mut outer = String::new();
    let mut inner = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find("$(") {
        outer.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find(')').unwrap_or(after.len());
        inner.push(after[..end].to_string());
        outer.push_str("SUBSTITUTED");
        rest = after.get(end + 1..).unwrap_or("");
    }
    outer.push_str(rest);
    let mut commands: Vec<String> = inner;
    for part in outer.split(" && ").flat_map(|p| p.split(" | ")).flat_map(|p| p.split("; ")) {
        commands.push(part.trim().to_string());
    }
    commands
}

/// Checks one `obol ...` line: its subcommands exist and its flags are in their help.
fn check_obol_line(cache: &mut BTreeMap<Vec<String>, String>, line: &str, at: usize) {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let mut path: Vec<String> = Vec::new();
    for token in tokens.iter().skip(1) {
        let commands = subcommands(&help(cache, &path));
        if commands.iter().any(|c| c == token) {
            path.push(token.to_string());
        } else {
            break;
        }
    }
    let text = help(cache, &path);
    assert!(
        !text.lines().any(|l| l.starts_with("Usage:") && l.contains("<COMMAND>")),
        "README.md line {at}: `{line}` stops at `obol {}`, which needs a subcommand",
        path.join(" ")
    );
    for token in tokens {
        let token = token.trim_start_matches(['[', '(', '"', '\'']).trim_end_matches([']', ')', '"', '\'', ',']);
        let Some(flag) = token.strip_prefix("--") else { continue };
        let flag = flag.split('=').next().unwrap_or(flag);
        if flag.is_empty() || !flag.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
            continue;
        }
        let named = format!("--{flag}");
        let found = text.match_indices(&named).any(|(i, _)| {
            text[i + named.len()..].chars().next().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-'))
        });
        assert!(found, "README.md line {at}: `obol {}` has no {named} (`{line}`)", path.join(" "));
    }
}

#[test]
fn every_help_of_the_command_tree_answers_and_teaches() {
    let mut cache = BTreeMap::new();
    let mut queue: Vec<Vec<String>> = vec![Vec::new()];
    let mut seen = 0;
    while let Some(path) = queue.pop() {
        let text = help(&mut cache, &path);
        seen += 1;
        assert!(text.contains("Usage: obol"), "obol {} --help: {text}", path.join(" "));
        let about = text.lines().next().unwrap_or_default();
        assert!(
            !about.trim().is_empty() && !about.starts_with("Usage"),
            "obol {} --help says nothing first",
            path.join(" ")
        );
        for command in subcommands(&text) {
            let mut next = path.clone();
            next.push(command);
            queue.push(next);
        }
        // Every flag of a leaf command is explained.
        for line in text.lines().filter(|line| line.trim_start().starts_with("--")) {
            let described = line.split("  ").filter(|part| !part.trim().is_empty()).count() >= 2;
            let next_line_describes = text
                .lines()
                .skip_while(|l| *l != line)
                .nth(1)
                .is_some_and(|l| l.starts_with("          ") && !l.trim().is_empty());
            assert!(
                described || next_line_describes,
                "obol {} --help: `{}` has no description",
                path.join(" "),
                line.trim()
            );
        }
    }
    assert!(seen > 40, "the command tree has {seen} commands");
}

#[test]
fn every_obol_line_of_the_readme_names_real_subcommands_and_flags() {
    let mut cache = BTreeMap::new();
    let mut checked = 0;
    for block in blocks() {
        let language = block.info.split_whitespace().next().unwrap_or_default();
        if !matches!(language, "sh" | "text") {
            continue;
        }
        for line in command_lines(&block.text) {
            for command in shell_commands(&line) {
                let command = command
                    .strip_prefix("cargo run --release --bin obol -- ")
                    .map_or(command.clone(), |c| format!("obol {c}"));
                if command.starts_with("obol ") {
                    check_obol_line(&mut cache, &command, block.line);
                    checked += 1;
                }
            }
            if let Some(rest) = line.strip_prefix("cargo run --release -p obol-examples --bin ") {
                let name = rest.split_whitespace().next().unwrap();
                assert!(repo().join(format!("examples/src/bin/{name}.rs")).exists(), "no example {name}");
            }
            if let Some(script) = line.strip_prefix("./").and_then(|l| l.split_whitespace().next()) {
                assert!(repo().join(script).is_file(), "README.md line {}: no {script}", block.line);
            }
        }
    }
    assert!(checked > 40, "only {checked} obol lines in README.md");
}

#[test]
fn every_sh_block_of_the_readme_runs_as_written_on_a_fresh_directory() {
    let dir = std::env::temp_dir().join(format!("obol-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let runnable: Vec<Block> = blocks().into_iter().filter(|b| b.info == "sh").collect();
    let (server_block, rest) = runnable.split_first().expect("README.md has sh blocks");
    assert_eq!(server_block.text.trim(), "cargo run --release --bin obol -- serve --demo", "the first command");

    let demo = support::launch_demo(&dir);
    let (mut server, key) = (demo.child, demo.key);
    let address = demo.base.strip_prefix("http://").expect("the demo serves plain HTTP").to_string();

    let bin_dir = Path::new(env!("CARGO_BIN_EXE_obol")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut script = String::new();
    for (n, block) in rest.iter().enumerate() {
        let text = block.text.replace("127.0.0.1:8402", &address).replace("localhost:8402", &address);
        script.push_str(&format!("echo '::block {n}::'\n{text}\n"));
    }
    let output = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &script])
        .current_dir(&dir)
        .env("PATH", path)
        .env("OBOL_SERVER", format!("http://{address}"))
        .env("OBOL_API_KEY", &key)
        .env("OBOL_CONFIG", dir.join("config.toml"))
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let last_block = stdout.rsplit("::block ").next().and_then(|b| b.split("::").next()).unwrap_or("?");
    let at = last_block.parse::<usize>().ok().and_then(|n| rest.get(n)).map_or(0, |b| b.line);
    assert!(output.status.success(), "README.md block at line {at} failed:\n{stdout}\n{stderr}");
    for (n, out) in stdout.split("::block ").skip(1).enumerate() {
        let block_line = rest.get(n).map_or(0, |b| b.line);
        assert!(!out.contains("urn:obol:problem:"), "README.md block at line {block_line} answered a problem:\n{out}");
    }
    assert!(!stderr.contains("error:"), "a README.md command failed:\n{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
