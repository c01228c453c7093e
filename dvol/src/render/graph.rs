//! The `--graph` of `dvol log`: commits drawn as lanes, like `git log --graph --oneline`.

/// One line of a drawn commit graph.
#[derive(Debug, PartialEq)]
pub enum GraphLine {
    /// Lanes joining or forking between two commits, e.g. `|/`.
    Edges(String),
    /// A commit's row: the lanes with `*` in the commit's lane, and the commit's index.
    Commit(String, usize),
}

/// Draws `commits` (id and parent ids, children before parents) as lanes, like
/// `git log --graph --oneline`: each lane waits for a commit; a commit takes the lane that
/// waits for it (merging others that wait for it too, drawn `|/`), and its lane then waits for
/// its first parent; further parents fork new lanes (drawn `|\`).
pub fn draw_graph(commits: &[(String, Vec<String>)]) -> Vec<GraphLine> {
    fn edges(width: usize, marks: impl IntoIterator<Item = (usize, char)>) -> GraphLine {
        let mut line = vec![' '; width * 2 + 1];
        for (at, ch) in marks {
            if at < line.len() {
                line[at] = ch;
            }
        }
        GraphLine::Edges(line.into_iter().collect::<String>().trim_end().to_string())
    }
    let mut lanes: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (index, (id, parents)) in commits.iter().enumerate() {
        let hits: Vec<usize> = (0..lanes.len()).filter(|&j| &lanes[j] == id).collect();
        let col = match hits.first() {
            Some(&col) => col,
            None => {
                lanes.push(id.clone());
                lanes.len() - 1
            }
        };
        if hits.len() > 1 {
            // Lanes waiting for this commit join its lane; lanes right of them move left.
            let first_gone = hits[1];
            let marks = (0..lanes.len()).map(|j| {
                if j < first_gone && !hits[1..].contains(&j) {
                    (2 * j, '|')
                } else {
                    (2 * j - 1, '/')
                }
            });
            out.push(edges(lanes.len(), marks));
            for &j in hits[1..].iter().rev() {
                lanes.remove(j);
            }
        }
        let row: Vec<&str> = (0..lanes.len())
            .map(|j| if j == col { "*" } else { "|" })
            .collect();
        out.push(GraphLine::Commit(row.join(" "), index));
        match parents.split_first() {
            None => {
                lanes.remove(col);
                if col < lanes.len() {
                    let marks = (0..lanes.len()).map(|j| {
                        if j < col {
                            (2 * j, '|')
                        } else {
                            (2 * j + 1, '/')
                        }
                    });
                    out.push(edges(lanes.len() + 1, marks));
                }
            }
            Some((first, rest)) => {
                lanes[col] = first.clone();
                let new: Vec<String> = rest
                    .iter()
                    .filter(|p| !lanes.contains(p))
                    .cloned()
                    .collect();
                if !new.is_empty() {
                    for (k, parent) in new.iter().enumerate() {
                        lanes.insert(col + 1 + k, parent.clone());
                    }
                    let marks = (0..lanes.len()).map(|j| {
                        if j <= col {
                            (2 * j, '|')
                        } else {
                            (2 * j - 1, '\\')
                        }
                    });
                    out.push(edges(lanes.len(), marks));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, parents: &[&str]) -> (String, Vec<String>) {
        (
            id.to_string(),
            parents.iter().map(|p| p.to_string()).collect(),
        )
    }

    fn render(commits: &[(String, Vec<String>)]) -> Vec<String> {
        draw_graph(commits)
            .into_iter()
            .map(|line| match line {
                GraphLine::Edges(e) => e,
                GraphLine::Commit(prefix, i) => format!("{prefix} {}", commits[i].0),
            })
            .collect()
    }

    #[test]
    fn linear_history_is_one_lane() {
        let commits = [node("c", &["b"]), node("b", &["a"]), node("a", &[])];
        assert_eq!(render(&commits), ["* c", "* b", "* a"]);
    }

    #[test]
    fn a_branch_forks_and_joins() {
        let commits = [
            node("e2", &["e1"]),
            node("m2", &["b"]),
            node("e1", &["b"]),
            node("b", &["a"]),
            node("a", &[]),
        ];
        assert_eq!(
            render(&commits),
            ["* e2", "| * m2", "* | e1", "|/", "* b", "* a"]
        );
    }

    #[test]
    fn a_merge_opens_a_lane() {
        let commits = [
            node("m", &["x", "y"]),
            node("x", &["a"]),
            node("y", &["a"]),
            node("a", &[]),
        ];
        assert_eq!(
            render(&commits),
            ["* m", "|\\", "* | x", "| * y", "|/", "* a"]
        );
    }
}
