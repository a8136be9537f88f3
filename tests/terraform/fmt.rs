//! A stand-in for `terraform fmt -check`, which cannot run here: every file survives an
//! HCL round trip (parsed, printed, parsed again to the same structure; and printed back
//! byte for byte by the format-preserving parser), and its layout follows fmt's rules:
//! two spaces per bracket level, `=` aligned across consecutive one-line attributes,
//! no tabs, no trailing spaces, one final newline.

use crate::tf::{module_dirs, tf_files};
use std::path::PathBuf;

fn all_tf_files() -> Vec<PathBuf> {
    module_dirs().iter().flat_map(|d| tf_files(d)).collect()
}

#[test]
fn every_file_round_trips_through_the_hcl_parser() {
    for f in all_tf_files() {
        let text = std::fs::read_to_string(&f).unwrap();
        let body = hcl::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let printed = hcl::format::to_string(&body)
            .unwrap_or_else(|e| panic!("{}: cannot print: {e}", f.display()));
        let again = hcl::parse(&printed).unwrap_or_else(|e| {
            panic!(
                "{}: the printed text does not parse: {e}\n{printed}",
                f.display()
            )
        });
        assert_eq!(
            body,
            again,
            "{}: printing changed the structure",
            f.display()
        );

        let edit =
            hcl::edit::parser::parse_body(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(
            edit.to_string(),
            text,
            "{}: not printed back as written",
            f.display()
        );
    }
}

/// How the brackets of one line change the nesting, strings and comments left out.
/// Interpolations (`${...}`) open and close within their string.
fn net_brackets(line: &str) -> i32 {
    let chars: Vec<char> = line.chars().collect();
    let mut net = 0;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '#' => break,
            '/' if chars.get(i + 1) == Some(&'/') => break,
            '"' => i = skip_string(&chars, i + 1),
            '{' | '[' | '(' => net += 1,
            '}' | ']' | ')' => net -= 1,
            _ => {}
        }
        i += 1;
    }
    net
}

/// The index of the quote closing the string that starts at `i`.
fn skip_string(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '$' | '%' if chars.get(i + 1) == Some(&'{') => {
                if i > 0 && chars[i - 1] == chars[i] {
                    // `$${` and `%%{` are literal.
                } else {
                    i = skip_interpolation(chars, i + 2);
                }
            }
            '"' => return i,
            _ => {}
        }
        i += 1;
    }
    i
}

/// The index of the `}` closing an interpolation whose body starts at `i`.
fn skip_interpolation(chars: &[char], mut i: usize) -> usize {
    let mut depth = 0;
    while i < chars.len() {
        match chars[i] {
            '"' => i = skip_string(chars, i + 1),
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// An attribute line: the key's width, the position of its `=` and whether its value
/// ends on the same line (only those are aligned; the others take one space).
fn assignment(line: &str) -> Option<(usize, usize, bool)> {
    let trimmed = line.trim_start();
    let indent = line.len() - trimmed.len();
    let key_len = if let Some(rest) = trimmed.strip_prefix('"') {
        rest.find('"')? + 2
    } else {
        trimmed
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
            .unwrap_or(trimmed.len())
    };
    if key_len == 0 {
        return None;
    }
    let after = &trimmed[key_len..];
    let spaces = after.len() - after.trim_start().len();
    let rest = after.trim_start();
    if !rest.starts_with('=') || rest.starts_with("==") || rest.starts_with("=>") {
        return None;
    }
    Some((
        key_len,
        indent + key_len + spaces,
        net_brackets(&rest[1..]) == 0,
    ))
}

/// Every way a file's layout differs from what `terraform fmt` writes.
pub fn layout_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if !text.ends_with('\n') || text.ends_with("\n\n") {
        problems.push("the file must end with exactly one newline".into());
    }
    // fmt's indentation: a line with more openers than closers indents the lines after
    // it by one level, however many it opened; closers undo those levels.
    let mut levels: Vec<i32> = Vec::new();
    let mut chain: Vec<(usize, usize, usize)> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let check_chain = |chain: &mut Vec<(usize, usize, usize)>, problems: &mut Vec<String>| {
        if let Some(widest) = chain.iter().map(|(_, w, _)| *w).max() {
            let indent = lines[chain[0].0].len() - lines[chain[0].0].trim_start().len();
            for (n, _, eq) in chain.iter() {
                if *eq != indent + widest + 1 {
                    problems.push(format!(
                        "line {}: `=` at column {} where fmt aligns it at {}",
                        n + 1,
                        eq + 1,
                        indent + widest + 2
                    ));
                }
            }
        }
        chain.clear();
    };
    for (n, line) in lines.iter().enumerate() {
        if line.contains('\t') {
            problems.push(format!("line {}: a tab", n + 1));
        }
        if line.ends_with(' ') {
            problems.push(format!("line {}: trailing spaces", n + 1));
        }
        if line.trim().is_empty() {
            check_chain(&mut chain, &mut problems);
            continue;
        }
        let net = net_brackets(line);
        if net < 0 {
            let mut closed = -net;
            while closed > 0 {
                let Some(top) = levels.last_mut() else { break };
                if closed >= *top {
                    closed -= *top;
                    levels.pop();
                } else {
                    *top -= closed;
                    closed = 0;
                }
            }
        }
        let want = 2 * levels.len();
        let indent = line.len() - line.trim_start().len();
        if indent != want {
            problems.push(format!(
                "line {}: indented {indent}, fmt indents {want}",
                n + 1
            ));
        }
        if net > 0 {
            levels.push(net);
        }
        let assigned = assignment(line);
        if let Some((width, eq, _)) = assigned {
            let after = &line[eq + 1..];
            if !after.is_empty() && (!after.starts_with(' ') || after.starts_with("  ")) {
                problems.push(format!("line {}: one space after `=`", n + 1));
            }
            if eq != indent + width + 1 && !matches!(assigned, Some((_, _, true))) {
                problems.push(format!("line {}: one space before `=`", n + 1));
            }
        }
        match assigned {
            Some((width, eq, true)) => chain.push((n, width, eq)),
            _ => check_chain(&mut chain, &mut problems),
        }
    }
    check_chain(&mut chain, &mut problems);
    problems
}

#[test]
fn every_file_is_laid_out_as_terraform_fmt_writes_it() {
    for f in all_tf_files() {
        let text = std::fs::read_to_string(&f).unwrap();
        let problems = layout_problems(&text);
        assert!(
            problems.is_empty(),
            "{}:\n  {}",
            f.display(),
            problems.join("\n  ")
        );
    }
}

#[test]
fn the_layout_check_finds_what_fmt_would_change() {
    let good = "resource \"x\" \"y\" {\n  name   = \"a\"\n  bucket = \"${var.b}-${\"c\"}\"\n\n  rule {\n    id = 1\n  }\n  tags = merge(var.tags, {\n    a = 1\n  })\n}\n";
    assert_eq!(layout_problems(good), Vec::<String>::new());
    for (bad, want) in [
        (
            good.replace("name   =", "name ="),
            "line 2: `=` at column 8 where fmt aligns it at 10",
        ),
        (
            good.replace("    id = 1", "   id = 1"),
            "line 6: indented 3, fmt indents 4",
        ),
        (
            good.replace("  tags = merge", "  tags  = merge"),
            "line 8: one space before `=`",
        ),
        (good.replace("    a = 1", "\ta = 1"), "line 9: a tab"),
        (
            good.replace("id = 1", "id =  1"),
            "line 6: one space after `=`",
        ),
        (format!("{good}\n"), "exactly one newline"),
    ] {
        let problems = layout_problems(&bad);
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "expected `{want}` for:\n{bad}\ngot: {problems:?}"
        );
    }
}
