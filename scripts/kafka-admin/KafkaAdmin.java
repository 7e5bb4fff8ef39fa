// A small admin tool for the local broker of scripts/kafka: ACLs and SCRAM
// users through kafka-clients' Admin API, without the kafka-tools jar (which
// drags in connect-runtime). scripts/kafka compiles it with javac against the
// cached Kafka jars and runs it as `scripts/kafka acl ...` / `scripts/kafka user ...`.
//
//   KafkaAdmin CLIENT.properties acl add    PRINCIPAL RESOURCE OPERATIONS [deny]
//   KafkaAdmin CLIENT.properties acl remove PRINCIPAL RESOURCE OPERATIONS [deny]
//   KafkaAdmin CLIENT.properties acl list   [PRINCIPAL]
//   KafkaAdmin CLIENT.properties acl apply  FILE|-
//   KafkaAdmin CLIENT.properties user add    NAME     (password on stdin, first line)
//   KafkaAdmin CLIENT.properties user remove NAME
//   KafkaAdmin CLIENT.properties cluster              (describe: id, nodes, controller)
//
// RESOURCE is `topic:NAME`, `group:NAME`, `transactional-id:NAME` or `cluster`;
// a NAME ending in `*` (other than a lone `*`) is a PREFIXED pattern, a lone `*`
// is Kafka's literal wildcard (every resource of that type). OPERATIONS is a
// comma-separated list of Kafka operation names (Read, Write, Describe, Create,
// IdempotentWrite, DescribeConfigs, All, ...), case-insensitive. The host is
// always `*`. `apply` reads lines `add|remove PRINCIPAL RESOURCE OPERATIONS
// [deny]` (blank lines and `#` comments are skipped) and sends them in one
// request per verb.

import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialDeletion;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.errors.SecurityDisabledException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;

public final class KafkaAdmin {
    private static final long TIMEOUT_S = 60;

    static final class Usage extends RuntimeException {
        Usage(String message) {
            super(message);
        }
    }

    public static void main(String[] args) {
        if (args.length < 2) {
            fail(2, "usage: KafkaAdmin CLIENT.properties acl|user|cluster ...");
        }
        Properties props = new Properties();
        try (InputStream in = new FileInputStream(args[0])) {
            props.load(in);
        } catch (IOException e) {
            fail(2, "cannot read client properties " + args[0] + ": " + e.getMessage());
        }
        props.putIfAbsent(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        props.putIfAbsent(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        int rc;
        try (Admin admin = Admin.create(props)) {
            rc = dispatch(admin, args);
        } catch (Usage e) {
            rc = fail(2, e.getMessage());
        } catch (ExecutionException e) {
            Throwable cause = e.getCause() == null ? e : e.getCause();
            if (cause instanceof SecurityDisabledException) {
                rc = fail(1, "the broker has no authorizer (start it with KAFKA_SECURITY=sasl_ssl): " + cause.getMessage());
            } else {
                rc = fail(1, cause.getClass().getSimpleName() + ": " + cause.getMessage());
            }
        } catch (Exception e) {
            rc = fail(1, e.getClass().getSimpleName() + ": " + e.getMessage());
        }
        System.exit(rc);
    }

    private static int fail(int rc, String message) {
        System.err.println("kafka-admin: error: " + message);
        System.exit(rc);
        return rc;
    }

    private static int dispatch(Admin admin, String[] args) throws Exception {
        String group = args[1];
        String verb = args.length > 2 ? args[2] : "";
        switch (group) {
            case "acl":
                switch (verb) {
                    case "add":
                    case "remove": {
                        need(args, 6, "acl " + verb + " PRINCIPAL RESOURCE OPERATIONS [deny]");
                        List<AclBinding> bindings = bindings(args[3], args[4], args[5], args.length > 6 ? args[6] : "");
                        return apply(admin, verb, bindings);
                    }
                    case "list":
                        return list(admin, args.length > 3 ? args[3] : null);
                    case "apply": {
                        need(args, 4, "acl apply FILE|-");
                        return applyFile(admin, args[3]);
                    }
                    default:
                        throw new Usage("acl add|remove|list|apply");
                }
            case "user":
                switch (verb) {
                    case "add": {
                        need(args, 4, "user add NAME (password on stdin)");
                        String password = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8)).readLine();
                        if (password == null || password.isEmpty()) {
                            throw new Usage("user add " + args[3] + ": no password on stdin");
                        }
                        List<UserScramCredentialAlteration> upsert = List.of(new UserScramCredentialUpsertion(
                                args[3], new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password));
                        admin.alterUserScramCredentials(upsert).all().get(TIMEOUT_S, TimeUnit.SECONDS);
                        System.out.println("user " + args[3] + ": SCRAM-SHA-512 credential set");
                        return 0;
                    }
                    case "remove": {
                        need(args, 4, "user remove NAME");
                        List<UserScramCredentialAlteration> delete = List.of(
                                new UserScramCredentialDeletion(args[3], ScramMechanism.SCRAM_SHA_512));
                        admin.alterUserScramCredentials(delete).all().get(TIMEOUT_S, TimeUnit.SECONDS);
                        System.out.println("user " + args[3] + ": SCRAM-SHA-512 credential removed");
                        return 0;
                    }
                    default:
                        throw new Usage("user add|remove NAME");
                }
            case "cluster": {
                DescribeClusterResult r = admin.describeCluster();
                System.out.println("cluster " + r.clusterId().get(TIMEOUT_S, TimeUnit.SECONDS)
                        + " controller " + r.controller().get(TIMEOUT_S, TimeUnit.SECONDS)
                        + " nodes " + r.nodes().get(TIMEOUT_S, TimeUnit.SECONDS));
                return 0;
            }
            default:
                throw new Usage("unknown command " + group + " (acl, user, cluster)");
        }
    }

    private static void need(String[] args, int n, String usage) {
        if (args.length < n) {
            throw new Usage("usage: " + usage);
        }
    }

    /** One binding per operation. */
    static List<AclBinding> bindings(String principal, String resource, String operations, String permission) {
        if (!principal.contains(":")) {
            throw new Usage("principal `" + principal + "` must look like User:NAME");
        }
        AclPermissionType type;
        if (permission.isEmpty() || permission.equalsIgnoreCase("allow")) {
            type = AclPermissionType.ALLOW;
        } else if (permission.equalsIgnoreCase("deny")) {
            type = AclPermissionType.DENY;
        } else {
            throw new Usage("permission must be allow or deny, not `" + permission + "`");
        }
        ResourcePattern pattern = pattern(resource);
        List<AclBinding> out = new ArrayList<>();
        for (String op : operations.split(",")) {
            AclOperation operation = operation(op.trim());
            out.add(new AclBinding(pattern, new AccessControlEntry(principal, "*", operation, type)));
        }
        return out;
    }

    static ResourcePattern pattern(String resource) {
        if (resource.equalsIgnoreCase("cluster")) {
            return new ResourcePattern(ResourceType.CLUSTER, "kafka-cluster", PatternType.LITERAL);
        }
        int colon = resource.indexOf(':');
        if (colon <= 0 || colon == resource.length() - 1) {
            throw new Usage("resource `" + resource + "` must be topic:NAME, group:NAME, transactional-id:NAME or cluster");
        }
        String kind = resource.substring(0, colon).toLowerCase(Locale.ROOT);
        String name = resource.substring(colon + 1);
        ResourceType type;
        switch (kind) {
            case "topic":
                type = ResourceType.TOPIC;
                break;
            case "group":
                type = ResourceType.GROUP;
                break;
            case "transactional-id":
            case "transactional_id":
                type = ResourceType.TRANSACTIONAL_ID;
                break;
            default:
                throw new Usage("unknown resource type `" + kind + "` (topic, group, transactional-id, cluster)");
        }
        if (name.length() > 1 && name.endsWith("*")) {
            return new ResourcePattern(type, name.substring(0, name.length() - 1), PatternType.PREFIXED);
        }
        return new ResourcePattern(type, name, PatternType.LITERAL);
    }

    static AclOperation operation(String name) {
        String wanted = name.replace("_", "").replace("-", "").toLowerCase(Locale.ROOT);
        for (AclOperation op : AclOperation.values()) {
            if (op == AclOperation.ANY || op == AclOperation.UNKNOWN) {
                continue;
            }
            if (op.name().replace("_", "").toLowerCase(Locale.ROOT).equals(wanted)) {
                return op;
            }
        }
        throw new Usage("unknown operation `" + name + "`");
    }

    private static int apply(Admin admin, String verb, List<AclBinding> bindings) throws Exception {
        if (bindings.isEmpty()) {
            return 0;
        }
        if (verb.equals("add")) {
            admin.createAcls(bindings).all().get(TIMEOUT_S, TimeUnit.SECONDS);
            awaitVisible(admin, bindings, true);
            for (AclBinding b : bindings) {
                System.out.println("added   " + show(b));
            }
        } else {
            List<AclBindingFilter> filters = new ArrayList<>();
            for (AclBinding b : bindings) {
                filters.add(b.toFilter());
            }
            Collection<AclBinding> removed = admin.deleteAcls(filters).all().get(TIMEOUT_S, TimeUnit.SECONDS);
            awaitVisible(admin, bindings, false);
            for (AclBinding b : removed) {
                System.out.println("removed " + show(b));
            }
        }
        return 0;
    }

    /**
     * The controller acknowledges an ACL change once it is in the metadata log;
     * the broker's authorizer applies it a moment later. DescribeAcls is
     * answered from the broker's authorizer, so waiting until it shows the
     * change means a client connecting next is judged by it.
     */
    private static void awaitVisible(Admin admin, List<AclBinding> bindings, boolean present) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(TIMEOUT_S);
        while (true) {
            Collection<AclBinding> now = admin.describeAcls(AclBindingFilter.ANY).values().get(TIMEOUT_S, TimeUnit.SECONDS);
            boolean done = true;
            for (AclBinding b : bindings) {
                if (now.contains(b) != present) {
                    done = false;
                    break;
                }
            }
            if (done) {
                return;
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("the broker did not show the ACL change within " + TIMEOUT_S + " s");
            }
            Thread.sleep(100);
        }
    }

    private static int applyFile(Admin admin, String file) throws Exception {
        List<String> lines = file.equals("-")
                ? new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8)).lines().toList()
                : Files.readAllLines(Path.of(file), StandardCharsets.UTF_8);
        List<AclBinding> add = new ArrayList<>();
        List<AclBinding> remove = new ArrayList<>();
        int n = 0;
        for (String raw : lines) {
            n++;
            String line = raw.strip();
            if (line.isEmpty() || line.startsWith("#")) {
                continue;
            }
            String[] f = line.split("\\s+");
            if (f.length < 4 || f.length > 5) {
                throw new Usage(file + ":" + n + ": expected `add|remove PRINCIPAL RESOURCE OPERATIONS [deny]`");
            }
            List<AclBinding> b = bindings(f[1], f[2], f[3], f.length == 5 ? f[4] : "");
            switch (f[0]) {
                case "add":
                    add.addAll(b);
                    break;
                case "remove":
                    remove.addAll(b);
                    break;
                default:
                    throw new Usage(file + ":" + n + ": verb must be add or remove, not `" + f[0] + "`");
            }
        }
        apply(admin, "remove", remove);
        apply(admin, "add", add);
        return 0;
    }

    private static int list(Admin admin, String principal) throws Exception {
        AclBindingFilter filter = new AclBindingFilter(ResourcePatternFilter.ANY,
                new AccessControlEntryFilter(principal, null, AclOperation.ANY, AclPermissionType.ANY));
        List<String> shown = new ArrayList<>();
        for (AclBinding b : admin.describeAcls(filter).values().get(TIMEOUT_S, TimeUnit.SECONDS)) {
            shown.add(show(b));
        }
        shown.sort(null);
        shown.forEach(System.out::println);
        return 0;
    }

    static String show(AclBinding b) {
        ResourcePattern p = b.pattern();
        String resource = p.resourceType() == ResourceType.CLUSTER
                ? "cluster"
                : p.resourceType().name().toLowerCase(Locale.ROOT).replace('_', '-') + ":" + p.name()
                        + (p.patternType() == PatternType.PREFIXED ? "*" : "");
        AccessControlEntry e = b.entry();
        String op = e.operation().name();
        return String.format("%s %s %s%s", e.principal(), resource, op,
                e.permissionType() == AclPermissionType.DENY ? " deny" : "");
    }
}
