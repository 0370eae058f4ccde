//! Finds the line of a key path in the policy source, for diagnostics.
//!
//! The model does not keep positions after deserialising, so validation
//! errors are located by walking the source text along the key path: block
//! mappings by indentation, flow mappings (`{a: b}`) by searching the parent
//! line.

/// Returns the 1-based (line, column) of the deepest key of `path` found.
pub fn locate(src: &str, path: &[&str]) -> (Option<usize>, Option<usize>) {
    let lines: Vec<&str> = src.lines().collect();
    let mut found: (Option<usize>, Option<usize>) = (None, None);
    // (line index, indentation) of the key found for the previous segment.
    let mut parent: Option<(usize, usize)> = None;
    for seg in path {
        let mut hit = None;
        if let Some((pl, _)) = parent {
            if let Some(col) = lines.get(pl).and_then(|l| find_flow_key(l, seg)) {
                hit = Some((pl, col, parent.map_or(0, |p| p.1)));
            }
        }
        if hit.is_none() {
            let from = parent.map_or(0, |(pl, _)| pl + 1);
            for (i, line) in lines.iter().enumerate().skip(from) {
                let trimmed = line.trim_start();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                let indent = line.len() - trimmed.len();
                if parent.is_some_and(|(_, pi)| indent <= pi) {
                    break;
                }
                if parent.is_none() && indent != 0 {
                    continue;
                }
                if key_of(trimmed).is_some_and(|k| k == *seg) {
                    hit = Some((i, indent + 1, indent));
                    break;
                }
            }
        }
        match hit {
            Some((i, col, indent)) => {
                found = (Some(i + 1), Some(col));
                parent = Some((i, indent));
            }
            None => break,
        }
    }
    found
}

/// The key of a block-mapping line (`key:` / `"key":` / `- key:`).
fn key_of(trimmed: &str) -> Option<&str> {
    let t = trimmed.strip_prefix("- ").unwrap_or(trimmed);
    let (k, _) = t.split_once(':')?;
    let k = k.trim();
    Some(k.trim_matches(|c| c == '"' || c == '\''))
}

/// Column (1-based) of `seg:` inside a flow mapping on this line.
fn find_flow_key(line: &str, seg: &str) -> Option<usize> {
    // `match_indices` yields only matches on character boundaries, so the
    // splits below cannot panic.
    for (at, _) in line.match_indices(seg) {
        let (before, from_seg) = line.split_at(at);
        let before_ok = before
            .bytes()
            .last()
            .is_none_or(|b| matches!(b, b'{' | b' ' | b',' | b'"' | b'\'' | b'['));
        let rest = from_seg.get(seg.len()..).unwrap_or("");
        let rest = rest.trim_start_matches(['"', '\'']);
        let after_ok = rest.starts_with(':');
        if before_ok && after_ok && before.contains('{') {
            return Some(at + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn finds_block_and_flow_keys() {
        let src = "version: 1\ngroups:\n  a:\n    data: {warehouse: unrestricted}\n  b:\n    data:\n      warehouse:\n        public: no_access\n";
        assert_eq!(
            locate(src, &["groups", "a", "data", "warehouse"]).0,
            Some(4)
        );
        assert_eq!(
            locate(src, &["groups", "b", "data", "warehouse", "public"]).0,
            Some(8)
        );
        assert_eq!(locate(src, &["groups", "b"]).0, Some(5));
        // A missing key reports the deepest parent found.
        assert_eq!(locate(src, &["groups", "b", "nope"]).0, Some(5));
    }
}
