// One workload run by the MariaDB JDBC driver (Debian's libmariadb-java) with server-side
// prepared statements, printed as JSON lines, so that a test can compare what it gets through
// witness with what it gets directly.
//
// usage: java -cp mariadb-java-client.jar Clients.java HOST PORT USER PASSWORD DATABASE

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;

public class Clients {
    static String rows(ResultSet rs) throws SQLException {
        List<String> out = new ArrayList<>();
        int columns = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            List<String> row = new ArrayList<>();
            for (int i = 1; i <= columns; i++) {
                String value = rs.getString(i);
                row.add(value == null ? "null" : "\"" + value.replace("\\", "\\\\").replace("\"", "\\\"") + "\"");
            }
            out.add("[" + String.join(",", row) + "]");
        }
        return "[" + String.join(",", out) + "]";
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:mariadb://" + args[0] + ":" + args[1] + "/" + args[4] + "?useServerPrepStmts=true&allowMultiQueries=true"
            + ("1".equals(System.getenv("WITNESS_TEST_COMPRESS")) ? "&useCompression=true" : "");
        try (Connection conn = DriverManager.getConnection(url, args[2], args[3])) {
            try (Statement st = conn.createStatement()) {
                System.out.println("customers " + rows(st.executeQuery("select id, name, email, card from customers order by id")));
                st.execute("create temporary table notes (id int primary key, body text, at datetime(6), amount decimal(10,2)) default charset utf8mb4");
            }
            try (PreparedStatement ps = conn.prepareStatement("select id, name, email from customers where id >= ? order by id")) {
                for (int from = 1; from <= 3; from++) {
                    ps.setInt(1, from);
                    System.out.println("prepared " + from + " " + rows(ps.executeQuery()));
                }
            }
            try (PreparedStatement ps = conn.prepareStatement("insert into notes values (?, ?, ?, ?)")) {
                for (int id = 1; id <= 3; id++) {
                    ps.setInt(1, id);
                    ps.setString(2, id == 2 ? null : "note " + id + " ✓");
                    ps.setTimestamp(3, java.sql.Timestamp.valueOf("2026-12-07 09:30:0" + id + ".25"));
                    ps.setBigDecimal(4, new java.math.BigDecimal(id + ".50"));
                    ps.addBatch();
                }
                int total = 0;
                for (int n : ps.executeBatch()) {
                    total += n;
                }
                System.out.println("batch " + total);
            }
            try (PreparedStatement ps = conn.prepareStatement("select id, body, at, amount from notes where id > ? order by id")) {
                ps.setInt(1, 0);
                System.out.println("notes " + rows(ps.executeQuery()));
            }
            try (Statement st = conn.createStatement()) {
                st.execute("insert into notes (id) values (1)");
                System.out.println("duplicate none");
            } catch (SQLException e) {
                System.out.println("duplicate " + e.getErrorCode());
            }
        }
    }
}
