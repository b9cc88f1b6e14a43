//! Rules and the decision: which rule applies to a request, and whether it is allowed, denied, or
//! held for approval. Precedence is by severity (deny over approve over allow), then by order in
//! the config; a request of several statements takes the strictest decision of its statements.

use std::str::FromStr;
use std::time::Duration;

use regex::Regex;

use crate::classify::{classify, SqlClass, Statement};
use crate::http::HttpRoute;
use crate::kube::KubeRoute;
use crate::shell::{is_locale_variable, needs_a_rule, simple_commands};
use witness_core::Glob;
use witness_core::SshOperation;

/// What a rule does to the requests it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Allow,
    /// Hold the request until an approver decides.
    Approve,
    Deny,
}

/// An action name that does not exist.
#[derive(Debug, thiserror::Error)]
#[error("unknown action {given:?}: use allow, deny or approve")]
pub struct UnknownAction {
    pub given: String,
}

/// The configured rules, in order, and what happens when none matches.
#[derive(Clone, Debug)]
pub struct Policy {
    pub default: Action,
    pub rules: Vec<Rule>,
}

/// One rule. Every list that is empty matches everything; a list with entries matches if any
/// entry does; a rule matches a statement when all its lists (and its regex, if any) match.
#[derive(Clone, Debug)]
pub struct Rule {
    pub name: String,
    pub connections: Vec<Glob>,
    pub identities: Vec<Glob>,
    /// Groups, any of which the caller must be in.
    pub groups: Vec<String>,
    pub tasks: Vec<Glob>,
    /// Statement classes. A statement that did not parse matches any rule that names classes.
    pub sql: Vec<SqlClass>,
    /// Table names (as `classify` names them) of which the statement must touch at least one.
    pub tables: Vec<Glob>,
    /// SSH command globs, matched against the whole command line and each simple command in it
    /// (`rm -rf *` matches `cd /srv && rm -rf build`). A rule with any makes it an SSH rule.
    pub shell: Vec<Glob>,
    /// SSH operations (shell, exec, sftp, git-push, port-forward, …). A rule with any makes it an
    /// SSH rule; forwardings are allowed only by a rule that names them.
    pub ssh: Vec<SshOperation>,
    /// HTTP method-and-path globs (`GET /api/*`). A rule with any makes it an HTTP rule.
    pub http: Vec<HttpRoute>,
    /// Kubernetes verb-and-resource globs (`delete pods`, `create pods/exec`). A rule with any
    /// makes it a Kubernetes rule.
    pub kube: Vec<KubeRoute>,
    /// Kubernetes namespace globs. A rule with any makes it a Kubernetes rule.
    pub namespaces: Vec<Glob>,
    /// Matched against the request's whole text (SQL, an SSH command line, or an HTTP request's
    /// `METHOD /path`).
    pub regex: Option<Regex>,
    pub action: Action,
    /// What a denied client is told (default: the rule's name).
    pub message: Option<String>,
    /// For `approve`: the groups whose members may decide.
    pub approvers: Vec<String>,
    /// For `approve`: how long to wait before the request is denied.
    pub timeout: Duration,
}

/// Who asks, through which connection, for which task: what rules match a request's asker by.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    pub identity: &'a str,
    pub groups: &'a [String],
    pub connection: &'a str,
    pub task: Option<&'a str>,
}

/// What to do with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Forward it. `rule` names the allowing rule, if one matched.
    Allow {
        rule: Option<String>,
    },
    Deny {
        rule: String,
        message: String,
    },
    /// Wait for a member of `approvers` (not the requester) to decide, at most `timeout`.
    Approve {
        rule: String,
        approvers: Vec<String>,
        timeout: Duration,
    },
}

/// Decides on SQL text a caller sent; returns the decision and the statements it was made from
/// (for the recording).
pub fn decide(policy: &Policy, caller: &Caller<'_>, sql: &str) -> (Decision, Vec<Statement>) {
    if !needs_statements(policy, caller) {
        return (Decision::Allow { rule: None }, Vec::new());
    }
    let statements = classify(sql);
    (decide_statements(policy, caller, sql, &statements), statements)
}

/// Whether deciding on this request needs its statements: false when no rule applies to the
/// caller and the default is allow (then the SQL need not be parsed at all).
pub fn needs_statements(policy: &Policy, caller: &Caller<'_>) -> bool {
    policy.default != Action::Allow
        || policy
            .rules
            .iter()
            .any(|rule| !rule.is_ssh_rule() && !rule.is_http_rule() && !rule.is_kube_rule() && rule.matches_caller(caller))
}

/// Decides on an SSH request: `operation` on the caller's connection, with `text` holding its
/// command line (empty for a shell or a forwarding; a variable's name for `env`). Rules that
/// name SQL classes or tables never apply here, and SSH rules (with `shell` or `ssh`) never apply
/// to SQL. A forwarding or an environment variable is allowed only by a rule that names it in
/// `ssh` (for `env`, `shell` globs match the variable's name): without one it is denied whatever
/// the default, except the locale variables (`LANG`, `LC_*`).
pub fn decide_ssh(policy: &Policy, caller: &Caller<'_>, operation: SshOperation, text: &str) -> Decision {
    let commands = simple_groups(text);
    let found = most_severe(policy.rules.iter().filter(|rule| rule.matches_caller(caller) && rule.matches_ssh(operation, text, &commands)));
    match found {
        Some(rule) => rule.decision(),
        None if operation == SshOperation::Env && is_locale_variable(text) => Decision::Allow { rule: None },
        None if needs_a_rule(operation) => Decision::Deny {
            rule: "default".into(),
            message: format!("{operation} is off: a rule with ssh = [\"{operation}\"] and action = \"allow\" turns it on"),
        },
        None => default_decision(policy.default),
    }
}

/// Each simple command of a line with the forms it may be matched in (as written, as it runs,
/// and the commands inside an `sh -c`); worked out once per request, for every rule.
fn simple_groups(line: &str) -> Vec<Vec<String>> {
    crate::shell::split_commands(line).into_iter().map(simple_commands).collect()
}

/// The first of the most severe rules: deny over approve over allow, config order breaking ties.
pub(crate) fn most_severe<'a>(rules: impl Iterator<Item = &'a Rule>) -> Option<&'a Rule> {
    rules.fold(None::<&Rule>, |best, rule| match best {
        Some(best) if best.action >= rule.action => Some(best),
        _ => Some(rule),
    })
}

pub(crate) fn default_decision(action: Action) -> Decision {
    match action {
        Action::Allow => Decision::Allow { rule: None },
        Action::Deny => {
            Decision::Deny { rule: "default".into(), message: "no rule allows this request and the policy default is deny".into() }
        }
        Action::Approve => Decision::Approve { rule: "default".into(), approvers: Vec::new(), timeout: Duration::from_secs(600) },
    }
}

/// Decides on SQL text already classified (`statements` is `classify(sql)`, perhaps from a
/// cache: the same prepared statement is decided at every execution).
pub fn decide_statements(policy: &Policy, caller: &Caller<'_>, sql: &str, statements: &[Statement]) -> Decision {
    let applicable: Vec<&Rule> = policy.rules.iter().filter(|rule| rule.matches_caller(caller)).collect();
    let mut strictest: Option<(Action, Option<&Rule>, &Statement)> = None;
    for statement in statements {
        let mut found = most_severe(applicable.iter().copied().filter(|rule| rule.matches_statement(statement, sql)));
        if statement.classes.contains(&SqlClass::LoadLocal) && found.is_none_or(|rule| rule.action != Action::Deny) {
            // A file of the client's into a table needs an allow (or approve) rule that names it:
            // rules about inserts in general, or the default, do not turn it on. Those that hold
            // such inserts for approval still do.
            let names_it = |rule: &&Rule| {
                rule.action != Action::Deny && rule.sql.contains(&SqlClass::LoadLocal) && rule.matches_statement(statement, sql)
            };
            let Some(naming) = applicable.iter().copied().find(names_it) else {
                return Decision::Deny {
                    rule: "default".into(),
                    message: "LOAD DATA LOCAL is off: a rule with sql = [\"load-local\"] and action = \"allow\" turns it on".into(),
                };
            };
            if found.is_none_or(|rule| rule.action == Action::Allow) {
                found = Some(naming);
            }
        }
        let (action, rule) = match found {
            Some(rule) => (rule.action, Some(rule)),
            None => (policy.default, None),
        };
        if strictest.is_none_or(|(current, _, _)| action > current) {
            strictest = Some((action, rule, statement));
        }
    }
    match strictest {
        Some((_, Some(rule), statement)) => match (rule.decision(), &statement.unparsed_because) {
            // The rule matched because witness could not read the statement, not because of what
            // it is: say that, rather than the rule's text about dropping tables.
            (Decision::Deny { rule: name, .. }, Some(because))
                if (!rule.sql.is_empty() || !rule.tables.is_empty()) && !rule.sql.contains(&SqlClass::Unparsed) =>
            {
                let message = format!(
                    "witness could not classify this statement ({because}), so it is refused as the riskiest kind of statement by rule \"{name}\"; rewrite it in plain SQL, or ask for a rule that allows unparsed statements"
                );
                Decision::Deny { rule: name, message }
            }
            (decision, _) => decision,
        },
        Some((Action::Deny, None, Statement { unparsed_because: Some(because), .. })) => Decision::Deny {
            rule: "default".into(),
            message: format!(
                "witness could not classify this statement ({because}), no rule allows unparsed statements, and the policy default is deny; rewrite it in plain SQL"
            ),
        },
        Some((action, None, _)) => default_decision(action),
        None => default_decision(policy.default),
    }
}

// === impl Rule ===

impl Rule {
    /// A rule with a name and an action that matches everything; narrow it with its fields.
    pub fn new(name: &str, action: Action) -> Rule {
        Rule {
            name: name.to_string(),
            connections: Vec::new(),
            identities: Vec::new(),
            groups: Vec::new(),
            tasks: Vec::new(),
            sql: Vec::new(),
            tables: Vec::new(),
            shell: Vec::new(),
            ssh: Vec::new(),
            http: Vec::new(),
            kube: Vec::new(),
            namespaces: Vec::new(),
            regex: None,
            action,
            message: None,
            approvers: Vec::new(),
            timeout: Duration::from_secs(600),
        }
    }

    pub(crate) fn matches_caller(&self, caller: &Caller<'_>) -> bool {
        let any = |globs: &[Glob], value: &str| globs.is_empty() || globs.iter().any(|g| g.matches(value));
        any(&self.connections, caller.connection)
            && any(&self.identities, caller.identity)
            && (self.groups.is_empty() || self.groups.iter().any(|g| caller.groups.contains(g)))
            && (self.tasks.is_empty() || caller.task.is_some_and(|task| self.tasks.iter().any(|g| g.matches(task))))
    }

    /// A rule about SSH requests only (it names shell commands or SSH operations).
    pub fn is_ssh_rule(&self) -> bool {
        !self.shell.is_empty() || !self.ssh.is_empty()
    }

    /// A rule about HTTP requests only (it names methods and paths).
    pub fn is_http_rule(&self) -> bool {
        !self.http.is_empty()
    }

    /// A rule about Kubernetes requests only (it names verbs, resources or namespaces).
    pub fn is_kube_rule(&self) -> bool {
        !self.kube.is_empty() || !self.namespaces.is_empty()
    }

    /// A rule about SQL, SSH or plain HTTP, which never applies to a Kubernetes request.
    pub(crate) fn is_other_protocols_rule(&self) -> bool {
        self.is_ssh_rule() || self.is_http_rule() || !self.sql.is_empty() || !self.tables.is_empty()
    }

    pub(crate) fn decision(&self) -> Decision {
        match self.action {
            Action::Allow => Decision::Allow { rule: Some(self.name.clone()) },
            Action::Deny => Decision::Deny { rule: self.name.clone(), message: self.message.clone().unwrap_or_else(|| self.name.clone()) },
            Action::Approve => Decision::Approve { rule: self.name.clone(), approvers: self.approvers.clone(), timeout: self.timeout },
        }
    }

    /// `commands`: each simple command of the line with the forms it may be matched in.
    fn matches_ssh(&self, operation: SshOperation, line: &str, commands: &[Vec<String>]) -> bool {
        if !self.sql.is_empty() || !self.tables.is_empty() || self.is_http_rule() || self.is_kube_rule() {
            return false;
        }
        // Forwardings and variables only by name: a rule about commands or everything must not
        // open a tunnel or set LD_PRELOAD.
        if needs_a_rule(operation) && !self.ssh.contains(&operation) {
            return false;
        }
        let operation_match = self.ssh.is_empty() || self.ssh.contains(&operation);
        let matched = |command: &str| self.shell.iter().any(|g| g.matches(command));
        let shell_match = self.shell.is_empty()
            || (!line.is_empty()
                && match self.action {
                    // An allow must cover the whole line: every simple command in it, as written
                    // or as it would run (`ls *` must not allow `ls x; rm -rf /`).
                    Action::Allow => commands.iter().all(|forms| forms.iter().any(|c| matched(c))),
                    // A deny or a hold applies when any command in the line matches.
                    Action::Deny | Action::Approve => matched(line) || commands.iter().flatten().any(|c| matched(c)),
                });
        let regex_match = self.regex.as_ref().is_none_or(|r| r.is_match(line));
        operation_match && shell_match && regex_match
    }

    fn matches_statement(&self, statement: &Statement, sql: &str) -> bool {
        if self.is_ssh_rule() || self.is_http_rule() || self.is_kube_rule() {
            return false;
        }
        let regex_match = self.regex.as_ref().is_none_or(|r| r.is_match(sql));
        let statement_match = match self.action {
            Action::Allow => self.covers(statement),
            Action::Deny | Action::Approve => self.touches(statement),
        };
        statement_match && regex_match
    }

    /// Whether a deny or a hold applies: the statement has any class the rule names and names
    /// any table it names. An unparsed statement may be of any class and touch any table. A
    /// name written without its schema may be in any schema (`search_path`, `USE`), so it meets a
    /// `schema.table` glob by its table part: `invoices` meets `billing.*`.
    fn touches(&self, statement: &Statement) -> bool {
        let unparsed = statement.classes.contains(&SqlClass::Unparsed);
        let classes_match = self.sql.is_empty() || unparsed || self.sql.iter().any(|c| statement.classes.contains(c));
        let named = |table: &String| {
            self.tables.iter().any(|glob| glob.matches(table) || (!table.contains('.') && glob.matches_last_part('.', table)))
        };
        let tables_match = self.tables.is_empty() || unparsed || statement.tables.iter().any(named);
        classes_match && tables_match
    }

    /// Whether an allow covers the whole statement, as an allow of shell commands must cover the
    /// whole line: `select` must not allow a SELECT whose CTE deletes, nor `tables = ["orders"]`
    /// a join with another table. Each of its classes is named, or the broader class it narrows
    /// (`delete` covers `delete-without-where`), or it is the broader class of one named; each
    /// table it names matches (a statement that names none is not covered by a rule about
    /// tables: its functions may read anything). An unparsed statement is covered only by a rule
    /// that names `unparsed`, or neither classes nor tables: what it does is unknown.
    fn covers(&self, statement: &Statement) -> bool {
        if statement.classes.contains(&SqlClass::Unparsed) {
            return self.tables.is_empty() && (self.sql.is_empty() || self.sql.contains(&SqlClass::Unparsed));
        }
        // A rule that turns LOAD DATA LOCAL on covers all it does (the delete of its REPLACE too).
        let loads = statement.classes.contains(&SqlClass::LoadLocal) && self.sql.contains(&SqlClass::LoadLocal);
        let named = |class: &SqlClass| {
            loads
                || self.sql.contains(class)
                || class.broader().is_some_and(|broader| self.sql.contains(&broader))
                || statement.classes.iter().any(|narrower| narrower.broader() == Some(*class) && self.sql.contains(narrower))
        };
        let classes_covered = self.sql.is_empty() || statement.classes.iter().all(named);
        // MySQL's names come in both spellings where they differ, and both must be matched: the
        // server may or may not fold case (`lower_case_table_names`).
        let matched = |table: &String| self.tables.iter().any(|glob| glob.matches(table));
        let tables_covered = self.tables.is_empty() || (!statement.tables.is_empty() && statement.tables.iter().all(matched));
        classes_covered && tables_covered
    }
}

impl FromStr for Action {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Action, UnknownAction> {
        match s {
            "allow" => Ok(Action::Allow),
            "deny" => Ok(Action::Deny),
            "approve" => Ok(Action::Approve),
            other => Err(UnknownAction { given: other.to_string() }),
        }
    }
}

/// A decision as tests compare it: `allow RULE`, `deny RULE`, `approve RULE` (`allow` alone when no
/// rule allowed it).
#[cfg(test)]
pub(crate) fn shown(decision: Decision) -> String {
    let shown = match decision {
        Decision::Allow { rule } => format!("allow {}", rule.unwrap_or_default()),
        Decision::Deny { rule, .. } => format!("deny {rule}"),
        Decision::Approve { rule, .. } => format!("approve {rule}"),
    };
    shown.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let mut no_drop = Rule::new("no-destructive-ddl", Action::Deny);
        no_drop.connections = vec![Glob::new("pg-*")];
        no_drop.groups = vec!["ai-agents".into()];
        no_drop.sql = vec![SqlClass::Drop, SqlClass::Truncate];
        no_drop.message = Some("agents may not drop or truncate; ask a DBA".into());
        let mut writes = Rule::new("writes-need-approval", Action::Approve);
        writes.sql = vec![SqlClass::DeleteWithoutWhere, SqlClass::UpdateWithoutWhere, SqlClass::Alter, SqlClass::Grant];
        writes.approvers = vec!["dba".into()];
        writes.timeout = Duration::from_secs(600);
        let mut secrets = Rule::new("no-secrets-table", Action::Deny);
        secrets.tables = vec![Glob::new("secrets"), Glob::new("*.secrets")];
        let mut pattern = Rule::new("no-pg-sleep", Action::Deny);
        pattern.regex = Some(Regex::new("(?i)pg_sleep\\(").unwrap());
        pattern.tasks = vec![Glob::new("JIRA-*")];
        let mut reads = Rule::new("reads", Action::Allow);
        reads.sql = vec![SqlClass::Select];
        Policy { default: Action::Allow, rules: vec![no_drop, writes, secrets, pattern, reads] }
    }

    #[test]
    fn a_statement_refused_because_it_cannot_be_read_says_so() {
        let groups = vec!["ai-agents".to_string()];
        let deny_message = |sql: &str, policy: &Policy| {
            let caller = Caller { identity: "claude", groups: &groups, connection: "pg-main", task: None };
            match decide(policy, &caller, sql).0 {
                Decision::Deny { rule, message } => (rule, message),
                other => panic!("{sql}: {other:?}"),
            }
        };
        let (rule, message) = deny_message("DO $$ BEGIN DROP TABLE t; END $$ garbage(", &policy());
        assert_eq!(rule, "no-destructive-ddl");
        assert!(message.starts_with("witness could not classify this statement (the SQL parser does not know it"), "{message}");
        assert!(message.contains("rule \"no-destructive-ddl\"") && !message.contains("ask a DBA"), "{message}");
        // A readable statement gets the rule's own message, and so does a rule about unparsed text.
        assert_eq!(deny_message("drop table t", &policy()).1, "agents may not drop or truncate; ask a DBA");
        let mut strict = Rule::new("no-unreadable-sql", Action::Deny);
        strict.sql = vec![SqlClass::Unparsed];
        strict.message = Some("write SQL witness can read".into());
        let policy = Policy { default: Action::Allow, rules: vec![strict] };
        assert_eq!(deny_message("not sql at all (", &policy).1, "write SQL witness can read");
    }

    fn check(sql: &str, groups: &[&str], connection: &str, task: Option<&str>, expect: &str) {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let caller = Caller { identity: "claude", groups: &groups, connection, task };
        let (decision, _) = decide(&policy(), &caller, sql);
        let got = shown(decision);
        assert_eq!(got.trim(), expect, "{sql} ({groups:?} on {connection}, task {task:?})");
    }

    #[test]
    fn decisions_follow_precedence_and_scope() {
        let agent = &["ai-agents"][..];
        check("drop table users", agent, "pg-local", None, "deny no-destructive-ddl");
        check("drop table users", &["dba"], "pg-local", None, "allow");
        check("drop table users", agent, "mysql-local", None, "allow");
        check("truncate users", agent, "pg-prod", None, "deny no-destructive-ddl");
        check("delete from users", agent, "pg-local", None, "approve writes-need-approval");
        check("delete from users where id = 1", agent, "pg-local", None, "allow");
        check("select * from users", agent, "pg-local", None, "allow reads");
        check("select 1; drop table users", agent, "pg-local", None, "deny no-destructive-ddl");
        check("delete from users; drop table t", agent, "pg-local", None, "deny no-destructive-ddl");
        check("select 1; update users set a = 1", agent, "pg-local", None, "approve writes-need-approval");
        check("select * from app.secrets", &[], "pg-local", None, "deny no-secrets-table");
        check("do $$ begin drop table users; end $$", agent, "pg-local", None, "deny no-destructive-ddl");
        check("selec 1", &[], "pg-local", None, "deny no-secrets-table");
        check("select pg_sleep(5)", &[], "pg-local", Some("JIRA-1"), "deny no-pg-sleep");
        check("select pg_sleep(5)", &[], "pg-local", None, "allow reads");
        check("", &[], "pg-local", None, "allow");
    }

    #[test]
    fn a_local_file_load_needs_a_rule_that_names_it() {
        let caller = Caller { identity: "claude", groups: &[], connection: "maria", task: None };
        let sql = "LOAD DATA LOCAL INFILE 'people.csv' INTO TABLE people";
        let statements = crate::classify_mysql(sql);
        let decided = |policy: &Policy| shown(decide_statements(policy, &caller, sql, &statements));
        // Not by the default, nor by a rule that allows inserts.
        assert_eq!(decided(&Policy { default: Action::Allow, rules: Vec::new() }), "deny default");
        let mut inserts = Rule::new("inserts", Action::Allow);
        inserts.sql = vec![SqlClass::Insert];
        assert_eq!(decided(&Policy { default: Action::Allow, rules: vec![inserts.clone()] }), "deny default");
        let mut loads = Rule::new("loads", Action::Allow);
        loads.sql = vec![SqlClass::LoadLocal];
        loads.tables = vec![Glob::new("people")];
        assert_eq!(decided(&Policy { default: Action::Allow, rules: vec![inserts.clone(), loads.clone()] }), "allow loads");
        // Rules that deny or hold inserts into the table still do; one that holds them does not
        // turn loads on by itself.
        let mut held = Rule::new("held", Action::Approve);
        held.tables = vec![Glob::new("people")];
        held.approvers = vec!["dba".into()];
        assert_eq!(decided(&Policy { default: Action::Allow, rules: vec![held.clone()] }), "deny default");
        assert_eq!(decided(&Policy { default: Action::Approve, rules: Vec::new() }), "deny default");
        assert_eq!(decided(&Policy { default: Action::Allow, rules: vec![loads.clone(), held] }), "approve held");
        let mut no_inserts = Rule::new("no-inserts", Action::Deny);
        no_inserts.sql = vec![SqlClass::Insert];
        assert_eq!(decided(&Policy { default: Action::Allow, rules: vec![loads, no_inserts] }), "deny no-inserts");
    }

    #[test]
    fn an_allow_covers_the_whole_statement_or_nothing() {
        let caller = Caller { identity: "claude", groups: &[], connection: "pg-local", task: None };
        let allow = |name: &str, sql: &[SqlClass], tables: &[&str]| {
            let mut rule = Rule::new(name, Action::Allow);
            rule.sql = sql.to_vec();
            rule.tables = tables.iter().map(|t| Glob::new(t)).collect();
            rule
        };
        let decided = |rule: &Rule, sql: &str| {
            let policy = Policy { default: Action::Deny, rules: vec![rule.clone()] };
            shown(decide(&policy, &caller, sql).0)
        };
        let reads = allow("reads", &[SqlClass::Select], &[]);
        assert_eq!(decided(&reads, "select * from users"), "allow reads");
        // A read that writes, or text witness cannot read, is not a read.
        assert_eq!(decided(&reads, "with gone as (delete from users returning *) select * from gone"), "deny default");
        assert_eq!(decided(&reads, "select * into copy from users"), "deny default");
        assert_eq!(decided(&reads, "selec 1"), "deny default");
        let mysql = "DROP TABLE customers /*!*/";
        let policy = Policy { default: Action::Deny, rules: vec![reads.clone()] };
        assert_eq!(shown(decide_statements(&policy, &caller, mysql, &crate::classify_mysql(mysql))), "deny default");
        match decide(&policy, &caller, "selec 1").0 {
            Decision::Deny { message, .. } => assert!(message.starts_with("witness could not classify this statement"), "{message}"),
            other => panic!("{other:?}"),
        }
        // A MySQL name in another case than the rule's may be another table (the server may not
        // fold case): both spellings must be matched. REPLACE's delete is part of a LOAD DATA
        // LOCAL a rule turns on.
        let policy = |rule: &Rule| Policy { default: Action::Deny, rules: vec![rule.clone()] };
        let mysql = |rule: &Rule, sql: &str| shown(decide_statements(&policy(rule), &caller, sql, &crate::classify_mysql(sql)));
        assert_eq!(mysql(&allow("orders", &[], &["orders"]), "SELECT * FROM orders"), "allow orders");
        assert_eq!(mysql(&allow("orders", &[], &["orders"]), "SELECT * FROM Orders"), "deny default");
        assert_eq!(mysql(&allow("orders", &[], &["orders", "Orders"]), "SELECT * FROM Orders"), "allow orders");
        assert_eq!(mysql(&allow("app", &[], &["app.*"]), "SELECT * FROM app.Orders"), "allow app");
        let loads = allow("loads", &[SqlClass::LoadLocal], &[]);
        assert_eq!(mysql(&loads, "LOAD DATA LOCAL INFILE 'f.csv' REPLACE INTO TABLE t"), "allow loads");
        // Every table it names, and at least one.
        let orders = allow("orders", &[], &["orders"]);
        assert_eq!(decided(&orders, "select * from orders where id = 1"), "allow orders");
        assert_eq!(decided(&orders, "select * from orders join secrets on true"), "deny default");
        assert_eq!(decided(&orders, "select 1"), "deny default");
        // A broader class covers its narrower ones and the reverse; siblings do not.
        assert_eq!(decided(&allow("deletes", &[SqlClass::Delete], &[]), "delete from users"), "allow deletes");
        assert_eq!(decided(&allow("drops", &[SqlClass::Drop], &[]), "drop table t"), "allow drops");
        assert_eq!(decided(&allow("drops", &[SqlClass::Drop], &[]), "truncate t"), "deny default");
        assert_eq!(decided(&allow("out", &[SqlClass::CopyOut], &[]), "copy (select 1) to program 'x'"), "deny default");
        // Unparsed text only by a rule that says so, or one about everything.
        assert_eq!(decided(&allow("raw", &[SqlClass::Unparsed], &[]), "selec 1"), "allow raw");
        assert_eq!(decided(&allow("raw", &[SqlClass::Unparsed], &["t"]), "selec 1"), "deny default");
        assert_eq!(decided(&allow("all", &[], &[]), "selec 1"), "allow all");
    }

    #[test]
    fn a_name_without_its_schema_meets_denials_about_any_schema() {
        let caller = Caller { identity: "claude", groups: &[], connection: "pg-local", task: None };
        let mut billing = Rule::new("no-billing-writes", Action::Deny);
        billing.sql = vec![SqlClass::Delete];
        billing.tables = vec![Glob::new("billing.*")];
        let mut ledger = Rule::new("ledger-held", Action::Approve);
        ledger.tables = vec![Glob::new("*.ledger")];
        ledger.approvers = vec!["dba".into()];
        let policy = Policy { default: Action::Allow, rules: vec![billing, ledger] };
        let decided = |sql: &str| shown(decide(&policy, &caller, sql).0);
        assert_eq!(decided("delete from billing.invoices where id = 1"), "deny no-billing-writes");
        assert_eq!(decided("delete from invoices where id = 1"), "deny no-billing-writes");
        assert_eq!(decided("delete from public.invoices where id = 1"), "allow");
        assert_eq!(decided("select * from ledger"), "approve ledger-held");
        assert_eq!(decided("select * from public.ledgers"), "allow");
    }

    #[test]
    fn the_default_applies_when_no_rule_matches() {
        let mut policy = policy();
        policy.default = Action::Deny;
        let caller = Caller { identity: "x", groups: &[], connection: "pg-local", task: None };
        assert!(matches!(decide(&policy, &caller, "insert into t values (1)").0, Decision::Deny { rule, .. } if rule == "default"));
        assert!(matches!(decide(&policy, &caller, "select 1").0, Decision::Allow { .. }));
    }

    #[test]
    fn ssh_requests_meet_only_ssh_rules_and_forwardings_need_a_rule() {
        let mut no_rm = Rule::new("no-rm-rf", Action::Deny);
        no_rm.shell = vec![Glob::new("rm -rf *"), Glob::new("shutdown*")];
        no_rm.message = Some("no recursive deletes".into());
        let mut pushes = Rule::new("pushes-need-approval", Action::Approve);
        pushes.ssh = vec![SshOperation::GitPush];
        pushes.connections = vec![Glob::new("web*")];
        pushes.approvers = vec!["leads".into()];
        let mut tunnels = Rule::new("ops-tunnels", Action::Allow);
        tunnels.ssh = vec![SshOperation::PortForward];
        tunnels.groups = vec!["ops".into()];
        let mut everything_on_prod = Rule::new("prod-readonly", Action::Allow);
        everything_on_prod.connections = vec![Glob::new("prod")];
        let mut git_variables = Rule::new("ops-git-variables", Action::Allow);
        git_variables.ssh = vec![SshOperation::Env];
        git_variables.shell = vec![Glob::new("GIT_*")];
        git_variables.groups = vec!["ops".into()];
        let mut sql_rule = Rule::new("no-drop", Action::Deny);
        sql_rule.sql = vec![SqlClass::Drop];
        let policy = Policy { default: Action::Allow, rules: vec![sql_rule, no_rm, pushes, tunnels, everything_on_prod, git_variables] };
        let check = |op: SshOperation, line: &str, groups: &[&str], connection: &str, expect: &str| {
            let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            let caller = Caller { identity: "claude", groups: &groups, connection, task: None };
            let got = shown(decide_ssh(&policy, &caller, op, line));
            assert_eq!(got.trim(), expect, "{op} {line:?} ({groups:?} on {connection})");
        };
        check(SshOperation::Exec, "ls -la", &[], "web", "allow");
        check(SshOperation::Exec, "rm -rf /srv/build", &[], "web", "deny no-rm-rf");
        check(SshOperation::Exec, "cd /srv && rm -rf build", &[], "web", "deny no-rm-rf");
        check(SshOperation::Exec, "echo 'rm -rf x'", &[], "web", "allow");
        check(SshOperation::Exec, "rm -r build", &[], "web", "allow");
        check(SshOperation::Shell, "", &[], "web", "allow");
        check(SshOperation::GitPush, "git-receive-pack '/srv/app.git'", &[], "web1", "approve pushes-need-approval");
        check(SshOperation::GitPush, "git-receive-pack '/srv/app.git'", &[], "db", "allow");
        check(SshOperation::PortForward, "127.0.0.1:5432", &[], "web", "deny default");
        check(SshOperation::PortForward, "127.0.0.1:5432", &["ops"], "web", "allow ops-tunnels");
        check(SshOperation::AgentForward, "", &["ops"], "web", "deny default");
        check(SshOperation::AgentForward, "", &[], "prod", "deny default");
        check(SshOperation::Env, "LANG", &[], "web", "allow");
        check(SshOperation::Env, "LC_ALL", &["ops"], "prod", "allow");
        check(SshOperation::Env, "LD_PRELOAD", &[], "prod", "deny default");
        check(SshOperation::Env, "BASH_ENV", &["ops"], "web", "deny default");
        check(SshOperation::Env, "GIT_TRACE", &["ops"], "web", "allow ops-git-variables");
        check(SshOperation::Env, "PATH", &["ops"], "web", "deny default");
        check(SshOperation::Env, "LANGUAGE", &[], "web", "deny default");
        check(SshOperation::Exec, "drop table users", &[], "prod", "allow prod-readonly");
        check(SshOperation::Exec, "/bin/rm  -rf /srv/build", &[], "web", "deny no-rm-rf");
        check(SshOperation::Exec, "sudo FOO=1 rm -rf /srv", &[], "web", "deny no-rm-rf");
        check(SshOperation::Exec, "bash -c 'rm -rf /srv'", &[], "web", "deny no-rm-rf");
        check(SshOperation::Exec, "echo \"$(rm -rf /srv)\"", &[], "web", "deny no-rm-rf");
        // An allow rule must cover every command of the line.
        let mut reads = Rule::new("reads", Action::Allow);
        reads.shell = vec![Glob::new("ls *"), Glob::new("cat *")];
        let allowlist = Policy { default: Action::Deny, rules: vec![reads] };
        let decide_line = |line: &str| {
            let caller = Caller { identity: "claude", groups: &[], connection: "web", task: None };
            match decide_ssh(&allowlist, &caller, SshOperation::Exec, line) {
                Decision::Allow { .. } => "allow",
                _ => "deny",
            }
        };
        assert_eq!(decide_line("ls -la /srv"), "allow");
        assert_eq!(decide_line("ls /srv | cat -n"), "allow");
        assert_eq!(decide_line("ls x; rm -rf /"), "deny");
        assert_eq!(decide_line("ls $(rm -rf /)"), "deny");
        // SQL never meets an SSH rule.
        let caller = Caller { identity: "claude", groups: &[], connection: "web", task: None };
        assert!(matches!(decide(&policy, &caller, "select 1 -- rm -rf x").0, Decision::Allow { .. }));
        let ssh_only = Policy { default: Action::Allow, rules: vec![policy.rules[1].clone()] };
        assert!(!needs_statements(&ssh_only, &caller), "an SSH-only policy does not make SQL parse");
    }

    #[test]
    fn action_names_parse() {
        assert_eq!("approve".parse::<Action>().unwrap(), Action::Approve);
        assert!("block".parse::<Action>().is_err());
    }
}
