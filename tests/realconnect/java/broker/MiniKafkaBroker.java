// Test-only, single-node, in-memory Kafka-protocol broker: just enough of the protocol for a real
// Kafka Connect 3.9 worker (its internal topics, producers, consumers and the worker group).
//
// NOT a Kafka broker: no persistence, no replication, no transactions, no ACLs, no compaction, no
// fetch sessions, no quotas, one partition leader (node 0) for everything. Listens on 127.0.0.1 only.
// (De)serialisation uses the generated message classes of kafka-clients-3.9.0.jar.
//
// Usage: java -cp kafka-clients-3.9.0.jar:<classes> MiniKafkaBroker
//            [--port N (0 = any free port)] [--port-file PATH] [--cluster-id ID]
//            [--initial-rebalance-delay-ms N (like Kafka's group.initial.rebalance.delay.ms; default 0)]
//            [--verbose]
// Prints "PORT=<port>" on stdout once listening (and writes the port to --port-file, atomically).
import java.io.BufferedInputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.BufferedOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;

import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.message.*;
import org.apache.kafka.common.protocol.ApiKeys;
import org.apache.kafka.common.protocol.ApiMessage;
import org.apache.kafka.common.protocol.ByteBufferAccessor;
import org.apache.kafka.common.protocol.Errors;
import org.apache.kafka.common.record.MemoryRecords;
import org.apache.kafka.common.record.MutableRecordBatch;
import org.apache.kafka.common.requests.RequestHeader;
import org.apache.kafka.common.requests.RequestUtils;

public final class MiniKafkaBroker {
    static final int NODE = 0;
    static final String HOST = "127.0.0.1";

    // Highest version we answer per API. All of them address topics by name (Fetch >= 13 and
    // Metadata topic ids are avoided); OffsetForLeaderEpoch is not advertised, so consumers skip
    // offset validation; OffsetFetch stays below the batched-groups form (v8).
    static final Map<ApiKeys, Short> MAX_VERSION = new EnumMap<>(ApiKeys.class);
    static {
        MAX_VERSION.put(ApiKeys.API_VERSIONS, (short) 3);
        MAX_VERSION.put(ApiKeys.METADATA, (short) 12);
        MAX_VERSION.put(ApiKeys.CREATE_TOPICS, (short) 7);
        MAX_VERSION.put(ApiKeys.DESCRIBE_CONFIGS, (short) 4);
        MAX_VERSION.put(ApiKeys.DESCRIBE_CLUSTER, (short) 1);
        MAX_VERSION.put(ApiKeys.PRODUCE, (short) 11);
        MAX_VERSION.put(ApiKeys.FETCH, (short) 12);
        MAX_VERSION.put(ApiKeys.LIST_OFFSETS, (short) 7);
        MAX_VERSION.put(ApiKeys.INIT_PRODUCER_ID, (short) 4);
        MAX_VERSION.put(ApiKeys.FIND_COORDINATOR, (short) 4);
        MAX_VERSION.put(ApiKeys.JOIN_GROUP, (short) 7);
        MAX_VERSION.put(ApiKeys.SYNC_GROUP, (short) 5);
        MAX_VERSION.put(ApiKeys.HEARTBEAT, (short) 4);
        MAX_VERSION.put(ApiKeys.LEAVE_GROUP, (short) 4);
        MAX_VERSION.put(ApiKeys.OFFSET_COMMIT, (short) 8);
        MAX_VERSION.put(ApiKeys.OFFSET_FETCH, (short) 7);
    }

    // ---------------------------------------------------------------- state (guarded by `this`)

    static final class Segment {               // one produced chunk of record batches
        final long first, last;
        final ByteBuffer data;
        Segment(long first, long last, ByteBuffer data) { this.first = first; this.last = last; this.data = data; }
    }

    static final class Partition {
        final List<Segment> segments = new ArrayList<>();
        long next;                             // log end offset == high watermark
    }

    static final class Topic {
        final List<Partition> partitions = new ArrayList<>();
        final Map<String, String> configs;
        Topic(int n, Map<String, String> configs) {
            for (int i = 0; i < n; i++) partitions.add(new Partition());
            this.configs = configs;
        }
    }

    enum State { EMPTY, PREPARING_REBALANCE, COMPLETING_REBALANCE, STABLE }

    static final class Member {
        final String id;
        String instanceId;
        int sessionTimeoutMs, rebalanceTimeoutMs;
        Map<String, byte[]> protocols = new LinkedHashMap<>();   // in preference order
        long lastSeen;
        boolean joined;                        // has a JoinGroup pending in the current rebalance
        JoinGroupResponseData joinResponse;    // set when the rebalance completes
        byte[] assignment = new byte[0];
        Member(String id) { this.id = id; }
    }

    static final class Group {
        final String id;
        State state = State.EMPTY;
        int generation;
        String protocolType, protocol, leader;
        long rebalanceDeadline, joinNotBefore;
        final Map<String, Member> members = new LinkedHashMap<>();
        final Map<String, Map<Integer, OffsetCommitRequestData.OffsetCommitRequestPartition>> offsets = new HashMap<>();
        Group(String id) { this.id = id; }
    }

    final String clusterId;
    final boolean verbose;
    final long initialRebalanceDelayMs;
    int port;
    final Map<String, Topic> topics = new TreeMap<>();
    final Map<String, Group> groups = new HashMap<>();
    long nextProducerId = 1000;

    MiniKafkaBroker(String clusterId, long initialRebalanceDelayMs, boolean verbose) {
        this.clusterId = clusterId;
        this.initialRebalanceDelayMs = initialRebalanceDelayMs;
        this.verbose = verbose;
    }

    static void log(String msg) { System.err.println("[" + java.time.Instant.now() + "] " + msg); }

    // ---------------------------------------------------------------- network

    public static void main(String[] args) throws Exception {
        int port = 0;
        String portFile = null, clusterId = "realconnect-" + Uuid.randomUuid();
        boolean verbose = false;
        long initialDelay = 0;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--port" -> port = Integer.parseInt(args[++i]);
                case "--port-file" -> portFile = args[++i];
                case "--cluster-id" -> clusterId = args[++i];
                case "--initial-rebalance-delay-ms" -> initialDelay = Long.parseLong(args[++i]);
                case "--verbose" -> verbose = true;
                default -> throw new IllegalArgumentException("unknown argument " + args[i]);
            }
        }
        MiniKafkaBroker broker = new MiniKafkaBroker(clusterId, initialDelay, verbose);
        ServerSocket server = new ServerSocket();
        server.setReuseAddress(true);
        server.bind(new InetSocketAddress(InetAddress.getByName(HOST), port), 128);
        broker.port = server.getLocalPort();
        if (portFile != null) {
            Path target = Path.of(portFile), tmp = Path.of(portFile + ".tmp");
            Files.writeString(tmp, broker.port + "\n");
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        }
        System.out.println("PORT=" + broker.port);
        System.out.flush();
        log("MiniKafkaBroker listening on " + HOST + ":" + broker.port + ", cluster id " + clusterId);

        Thread reaper = new Thread(broker::reapLoop, "group-reaper");
        reaper.setDaemon(true);
        reaper.start();
        while (true) {
            Socket socket = server.accept();
            Thread t = new Thread(() -> broker.serve(socket), "conn-" + socket.getPort());
            t.setDaemon(true);
            t.start();
        }
    }

    /** One thread per connection; requests on a connection are answered in order, like Kafka does. */
    void serve(Socket socket) {
        try (socket) {
            socket.setTcpNoDelay(true);
            DataInputStream in = new DataInputStream(new BufferedInputStream(socket.getInputStream()));
            DataOutputStream out = new DataOutputStream(new BufferedOutputStream(socket.getOutputStream()));
            while (true) {
                int size;
                try {
                    size = in.readInt();
                } catch (EOFException e) {
                    return;
                }
                byte[] bytes = new byte[size];
                in.readFully(bytes);
                ByteBuffer buffer = ByteBuffer.wrap(bytes);
                RequestHeader header = RequestHeader.parse(buffer);
                ApiKeys api = header.apiKey();
                short version = header.apiVersion();
                Short max = MAX_VERSION.get(api);
                ApiMessage response;
                if (api == ApiKeys.API_VERSIONS && max != null && version > max) {
                    // Client newer than us: answer in v0 with UNSUPPORTED_VERSION and our list.
                    response = apiVersions().setErrorCode(Errors.UNSUPPORTED_VERSION.code());
                    version = 0;
                } else if (max == null || version > max) {
                    log("unsupported request " + api + " v" + version + ", closing connection");
                    return;
                } else {
                    ApiMessage request = api.messageType.newRequest();
                    request.read(new ByteBufferAccessor(buffer), version);
                    if (verbose) log(header.clientId() + " -> " + api + " v" + version);
                    response = handle(header, request);
                }
                if (response == null) continue;            // Produce with acks=0
                ByteBuffer payload = RequestUtils.serialize(
                        new ResponseHeaderData().setCorrelationId(header.correlationId()),
                        api.responseHeaderVersion(version), response, version);
                out.writeInt(payload.remaining());
                out.write(payload.array(), payload.arrayOffset() + payload.position(), payload.remaining());
                out.flush();
            }
        } catch (IOException e) {
            if (verbose) log("connection closed: " + e);
        } catch (RuntimeException | InterruptedException e) {
            log("error serving " + socket + ": " + e);
            e.printStackTrace();
        }
    }

    ApiMessage handle(RequestHeader header, ApiMessage request) throws InterruptedException {
        short v = header.apiVersion();
        return switch (header.apiKey()) {
            case API_VERSIONS -> apiVersions();
            case METADATA -> metadata((MetadataRequestData) request, v);
            case CREATE_TOPICS -> createTopics((CreateTopicsRequestData) request);
            case DESCRIBE_CONFIGS -> describeConfigs((DescribeConfigsRequestData) request);
            case DESCRIBE_CLUSTER -> describeCluster((DescribeClusterRequestData) request);
            case PRODUCE -> produce((ProduceRequestData) request);
            case FETCH -> fetch((FetchRequestData) request);
            case LIST_OFFSETS -> listOffsets((ListOffsetsRequestData) request, v);
            case INIT_PRODUCER_ID -> initProducerId((InitProducerIdRequestData) request);
            case FIND_COORDINATOR -> findCoordinator((FindCoordinatorRequestData) request, v);
            case JOIN_GROUP -> joinGroup((JoinGroupRequestData) request, v, header.clientId());
            case SYNC_GROUP -> syncGroup((SyncGroupRequestData) request);
            case HEARTBEAT -> heartbeat((HeartbeatRequestData) request);
            case LEAVE_GROUP -> leaveGroup((LeaveGroupRequestData) request, v);
            case OFFSET_COMMIT -> offsetCommit((OffsetCommitRequestData) request);
            case OFFSET_FETCH -> offsetFetch((OffsetFetchRequestData) request);
            default -> throw new IllegalStateException("not advertised: " + header.apiKey());
        };
    }

    // ---------------------------------------------------------------- cluster and topics

    ApiVersionsResponseData apiVersions() {
        ApiVersionsResponseData r = new ApiVersionsResponseData();
        MAX_VERSION.forEach((api, max) -> r.apiKeys().add(new ApiVersionsResponseData.ApiVersion()
                .setApiKey(api.id).setMinVersion(api.oldestVersion()).setMaxVersion(max)));
        return r;
    }

    synchronized Topic createTopic(String name, int partitions, Map<String, String> configs) {
        Topic t = new Topic(partitions, configs);
        topics.put(name, t);
        log("created topic " + name + " (" + partitions + " partition(s)) " + configs);
        return t;
    }

    synchronized Partition partition(String topic, int index) {
        Topic t = topics.get(topic);
        return t == null || index < 0 || index >= t.partitions.size() ? null : t.partitions.get(index);
    }

    synchronized MetadataResponseData metadata(MetadataRequestData req, short v) {
        MetadataResponseData r = new MetadataResponseData().setClusterId(clusterId).setControllerId(NODE);
        r.brokers().add(new MetadataResponseData.MetadataResponseBroker().setNodeId(NODE).setHost(HOST).setPort(port));
        List<String> names = new ArrayList<>();
        if (req.topics() == null || (v == 0 && req.topics().isEmpty())) {
            names.addAll(topics.keySet());
        } else {
            for (MetadataRequestData.MetadataRequestTopic t : req.topics()) {
                names.add(t.name());
                if (!topics.containsKey(t.name()) && (v < 4 || req.allowAutoTopicCreation())) {
                    createTopic(t.name(), 1, new TreeMap<>());
                }
            }
        }
        for (String name : names) {
            MetadataResponseData.MetadataResponseTopic rt = new MetadataResponseData.MetadataResponseTopic()
                    .setName(name).setTopicId(Uuid.ZERO_UUID).setIsInternal(false);
            Topic t = topics.get(name);
            if (t == null) {
                rt.setErrorCode(Errors.UNKNOWN_TOPIC_OR_PARTITION.code());
            } else {
                for (int i = 0; i < t.partitions.size(); i++) {
                    rt.partitions().add(new MetadataResponseData.MetadataResponsePartition()
                            .setPartitionIndex(i).setLeaderId(NODE).setLeaderEpoch(0)
                            .setReplicaNodes(List.of(NODE)).setIsrNodes(List.of(NODE)));
                }
            }
            r.topics().add(rt);
        }
        return r;
    }

    synchronized CreateTopicsResponseData createTopics(CreateTopicsRequestData req) {
        CreateTopicsResponseData r = new CreateTopicsResponseData();
        for (CreateTopicsRequestData.CreatableTopic t : req.topics()) {
            CreateTopicsResponseData.CreatableTopicResult res =
                    new CreateTopicsResponseData.CreatableTopicResult().setName(t.name());
            if (topics.containsKey(t.name())) {
                res.setErrorCode(Errors.TOPIC_ALREADY_EXISTS.code())
                        .setErrorMessage("Topic '" + t.name() + "' already exists.");
            } else {
                int n = t.numPartitions() > 0 ? t.numPartitions()
                        : t.assignments().isEmpty() ? 1 : t.assignments().size();
                Map<String, String> configs = new TreeMap<>();
                t.configs().forEach(c -> configs.put(c.name(), c.value()));
                if (!req.validateOnly()) createTopic(t.name(), n, configs);
                res.setNumPartitions(n).setReplicationFactor((short) 1);
            }
            r.topics().add(res);
        }
        return r;
    }

    synchronized DescribeConfigsResponseData describeConfigs(DescribeConfigsRequestData req) {
        DescribeConfigsResponseData r = new DescribeConfigsResponseData();
        for (DescribeConfigsRequestData.DescribeConfigsResource res : req.resources()) {
            DescribeConfigsResponseData.DescribeConfigsResult out = new DescribeConfigsResponseData.DescribeConfigsResult()
                    .setResourceType(res.resourceType()).setResourceName(res.resourceName());
            if (res.resourceType() == ConfigResource.Type.TOPIC.id()) {
                Topic t = topics.get(res.resourceName());
                if (t == null) {
                    out.setErrorCode(Errors.UNKNOWN_TOPIC_OR_PARTITION.code());
                } else {
                    Map<String, String> configs = new TreeMap<>(t.configs);
                    configs.putIfAbsent("cleanup.policy", "delete");
                    configs.forEach((k, val) -> {
                        if (res.configurationKeys() == null || res.configurationKeys().contains(k)) {
                            out.configs().add(new DescribeConfigsResponseData.DescribeConfigsResourceResult()
                                    .setName(k).setValue(val)
                                    .setConfigSource((byte) 1 /* DYNAMIC_TOPIC_CONFIG */));
                        }
                    });
                }
            }   // other resources (broker, ...): no configs
            r.results().add(out);
        }
        return r;
    }

    DescribeClusterResponseData describeCluster(DescribeClusterRequestData req) {
        DescribeClusterResponseData r = new DescribeClusterResponseData().setClusterId(clusterId)
                .setControllerId(NODE).setEndpointType(req.endpointType());
        r.brokers().add(new DescribeClusterResponseData.DescribeClusterBroker().setBrokerId(NODE).setHost(HOST).setPort(port));
        return r;
    }

    // ---------------------------------------------------------------- records

    synchronized ProduceResponseData produce(ProduceRequestData req) {
        ProduceResponseData r = new ProduceResponseData();
        for (ProduceRequestData.TopicProduceData td : req.topicData()) {
            if (!topics.containsKey(td.name())) createTopic(td.name(), 1, new TreeMap<>());
            ProduceResponseData.TopicProduceResponse tr = new ProduceResponseData.TopicProduceResponse().setName(td.name());
            for (ProduceRequestData.PartitionProduceData pd : td.partitionData()) {
                ProduceResponseData.PartitionProduceResponse pr =
                        new ProduceResponseData.PartitionProduceResponse().setIndex(pd.index());
                Partition p = partition(td.name(), pd.index());
                if (p == null) {
                    pr.setErrorCode(Errors.UNKNOWN_TOPIC_OR_PARTITION.code());
                } else {
                    pr.setBaseOffset(append(p, (MemoryRecords) pd.records())).setLogStartOffset(0);
                }
                tr.partitionResponses().add(pr);
            }
            r.responses().add(tr);
        }
        notifyAll();                           // wake long-polling fetches
        return req.acks() == 0 ? null : r;
    }

    /** Assigns offsets to the batches (rewriting base offset and leader epoch: outside the CRC). */
    static long append(Partition p, MemoryRecords records) {
        long base = p.next;
        if (records == null || records.sizeInBytes() == 0) return base;
        ByteBuffer copy = ByteBuffer.allocate(records.sizeInBytes());
        copy.put(records.buffer()).flip();
        for (MutableRecordBatch batch : MemoryRecords.readableRecords(copy.duplicate()).batches()) {
            long delta = batch.lastOffset() - batch.baseOffset();
            batch.setLastOffset(p.next + delta);
            batch.setPartitionLeaderEpoch(0);
            p.next += delta + 1;
        }
        p.segments.add(new Segment(base, p.next - 1, copy.asReadOnlyBuffer()));
        return base;
    }

    synchronized FetchResponseData fetch(FetchRequestData req) throws InterruptedException {
        long deadline = System.currentTimeMillis() + Math.max(0, req.maxWaitMs());
        while (true) {
            int[] bytes = {0};
            FetchResponseData r = readAll(req, bytes);
            long left = deadline - System.currentTimeMillis();
            if (bytes[0] >= Math.max(1, req.minBytes()) || left <= 0) return r;
            wait(left);                        // until a Produce arrives or maxWait passes
        }
    }

    FetchResponseData readAll(FetchRequestData req, int[] bytes) {
        FetchResponseData r = new FetchResponseData();       // session id 0: no fetch sessions
        for (FetchRequestData.FetchTopic ft : req.topics()) {
            FetchResponseData.FetchableTopicResponse tr = new FetchResponseData.FetchableTopicResponse().setTopic(ft.topic());
            for (FetchRequestData.FetchPartition fp : ft.partitions()) {
                FetchResponseData.PartitionData pd = new FetchResponseData.PartitionData()
                        .setPartitionIndex(fp.partition()).setRecords(MemoryRecords.EMPTY);
                Partition p = partition(ft.topic(), fp.partition());
                if (p == null) {
                    pd.setErrorCode(Errors.UNKNOWN_TOPIC_OR_PARTITION.code());
                } else {
                    pd.setHighWatermark(p.next).setLastStableOffset(p.next).setLogStartOffset(0);
                    if (fp.fetchOffset() < 0 || fp.fetchOffset() > p.next) {
                        pd.setErrorCode(Errors.OFFSET_OUT_OF_RANGE.code());
                    } else {
                        MemoryRecords records = read(p, fp.fetchOffset(), fp.partitionMaxBytes());
                        bytes[0] += records.sizeInBytes();
                        pd.setRecords(records);
                    }
                }
                tr.partitions().add(pd);
            }
            r.responses().add(tr);
        }
        return r;
    }

    /** The stored chunks holding offsets >= offset, up to maxBytes (but at least one chunk). */
    static MemoryRecords read(Partition p, long offset, int maxBytes) {
        List<ByteBuffer> chunks = new ArrayList<>();
        int size = 0;
        for (Segment s : p.segments) {
            if (s.last < offset) continue;
            if (!chunks.isEmpty() && size + s.data.remaining() > maxBytes) break;
            chunks.add(s.data.duplicate());
            size += s.data.remaining();
        }
        if (chunks.isEmpty()) return MemoryRecords.EMPTY;
        ByteBuffer out = ByteBuffer.allocate(size);
        chunks.forEach(out::put);
        out.flip();
        return MemoryRecords.readableRecords(out);
    }

    synchronized ListOffsetsResponseData listOffsets(ListOffsetsRequestData req, short v) {
        ListOffsetsResponseData r = new ListOffsetsResponseData();
        for (ListOffsetsRequestData.ListOffsetsTopic t : req.topics()) {
            ListOffsetsResponseData.ListOffsetsTopicResponse tr = new ListOffsetsResponseData.ListOffsetsTopicResponse().setName(t.name());
            for (ListOffsetsRequestData.ListOffsetsPartition lp : t.partitions()) {
                ListOffsetsResponseData.ListOffsetsPartitionResponse pr =
                        new ListOffsetsResponseData.ListOffsetsPartitionResponse().setPartitionIndex(lp.partitionIndex());
                Partition p = partition(t.name(), lp.partitionIndex());
                if (p == null) {
                    pr.setErrorCode(Errors.UNKNOWN_TOPIC_OR_PARTITION.code());
                } else {
                    // -2 earliest, -1 latest; lookups by timestamp are not supported (answer "none").
                    long offset = lp.timestamp() == -2 ? 0 : lp.timestamp() == -1 ? p.next : -1;
                    if (v == 0) pr.setOldStyleOffsets(List.of(offset));
                    else pr.setOffset(offset).setTimestamp(-1).setLeaderEpoch(0);
                }
                tr.partitions().add(pr);
            }
            r.topics().add(tr);
        }
        return r;
    }

    synchronized InitProducerIdResponseData initProducerId(InitProducerIdRequestData req) {
        InitProducerIdResponseData r = new InitProducerIdResponseData();
        if (req.producerId() >= 0) return r.setProducerId(req.producerId()).setProducerEpoch((short) (req.producerEpoch() + 1));
        return r.setProducerId(nextProducerId++).setProducerEpoch((short) 0);
    }

    // ---------------------------------------------------------------- groups (classic protocol)

    FindCoordinatorResponseData findCoordinator(FindCoordinatorRequestData req, short v) {
        FindCoordinatorResponseData r = new FindCoordinatorResponseData();
        if (v < 4) return r.setNodeId(NODE).setHost(HOST).setPort(port);
        for (String key : req.coordinatorKeys()) {
            r.coordinators().add(new FindCoordinatorResponseData.Coordinator().setKey(key).setNodeId(NODE).setHost(HOST).setPort(port));
        }
        return r;
    }

    Group group(String id) { return groups.computeIfAbsent(id, Group::new); }

    synchronized JoinGroupResponseData joinGroup(JoinGroupRequestData req, short v, String clientId) throws InterruptedException {
        Group g = group(req.groupId());
        JoinGroupResponseData error = new JoinGroupResponseData().setMemberId(req.memberId()).setGenerationId(-1);
        if (!g.members.isEmpty() && !req.protocolType().equals(g.protocolType)) {
            return error.setErrorCode(Errors.INCONSISTENT_GROUP_PROTOCOL.code());
        }
        Member m;
        if (req.memberId().isEmpty()) {        // new member: give it an id right away (no MEMBER_ID_REQUIRED round trip)
            m = new Member(clientId + "-" + UUID.randomUUID());
            g.members.put(m.id, m);
        } else if ((m = g.members.get(req.memberId())) == null) {
            return error.setErrorCode(Errors.UNKNOWN_MEMBER_ID.code());
        }
        m.instanceId = req.groupInstanceId();
        m.sessionTimeoutMs = req.sessionTimeoutMs();
        m.rebalanceTimeoutMs = v >= 1 ? req.rebalanceTimeoutMs() : req.sessionTimeoutMs();
        m.protocols = new LinkedHashMap<>();
        for (JoinGroupRequestData.JoinGroupRequestProtocol p : req.protocols()) m.protocols.put(p.name(), p.metadata());
        m.lastSeen = System.currentTimeMillis();
        g.protocolType = req.protocolType();
        if (g.state != State.PREPARING_REBALANCE) prepareRebalance(g, "member " + m.id + " joined");
        m.joined = true;
        maybeCompleteJoin(g);
        while (m.joinResponse == null && g.members.get(m.id) == m) wait(500);
        if (g.members.get(m.id) != m) return error.setErrorCode(Errors.UNKNOWN_MEMBER_ID.code());
        JoinGroupResponseData r = m.joinResponse;
        m.joinResponse = null;
        return r;
    }

    void prepareRebalance(Group g, String reason) {
        log("group " + g.id + ": preparing rebalance (" + reason + ")");
        if (g.state == State.EMPTY) g.joinNotBefore = System.currentTimeMillis() + initialRebalanceDelayMs;
        g.state = State.PREPARING_REBALANCE;
        int timeout = g.members.values().stream().mapToInt(x -> x.rebalanceTimeoutMs).max().orElse(0);
        g.rebalanceDeadline = System.currentTimeMillis() + timeout;
        g.members.values().forEach(x -> x.joined = false);
        notifyAll();                           // SyncGroup waiters must now see REBALANCE_IN_PROGRESS
    }

    void maybeCompleteJoin(Group g) {
        if (g.state != State.PREPARING_REBALANCE) return;
        if (g.members.isEmpty()) {
            g.state = State.EMPTY;
            g.leader = null;
            notifyAll();
            return;
        }
        if (!g.members.values().stream().allMatch(x -> x.joined)) return;
        if (System.currentTimeMillis() < g.joinNotBefore) return;     // the reaper completes it later
        g.generation++;
        g.state = State.COMPLETING_REBALANCE;
        if (g.leader == null || !g.members.containsKey(g.leader)) g.leader = g.members.keySet().iterator().next();
        Member leader = g.members.get(g.leader);
        g.protocol = leader.protocols.keySet().stream()
                .filter(p -> g.members.values().stream().allMatch(x -> x.protocols.containsKey(p)))
                .findFirst().orElse(null);
        List<JoinGroupResponseData.JoinGroupResponseMember> all = new ArrayList<>();
        for (Member x : g.members.values()) {
            all.add(new JoinGroupResponseData.JoinGroupResponseMember().setMemberId(x.id)
                    .setGroupInstanceId(x.instanceId).setMetadata(x.protocols.get(g.protocol)));
        }
        long now = System.currentTimeMillis();
        for (Member x : g.members.values()) {
            x.joined = false;
            x.lastSeen = now;
            x.assignment = new byte[0];
            x.joinResponse = new JoinGroupResponseData().setGenerationId(g.generation)
                    .setProtocolType(g.protocolType).setProtocolName(g.protocol).setLeader(g.leader)
                    .setMemberId(x.id).setMembers(x.id.equals(g.leader) ? all : new ArrayList<>());
        }
        log("group " + g.id + ": generation " + g.generation + ", protocol " + g.protocol + ", leader " + g.leader
                + ", members " + g.members.keySet());
        notifyAll();
    }

    synchronized SyncGroupResponseData syncGroup(SyncGroupRequestData req) throws InterruptedException {
        SyncGroupResponseData r = new SyncGroupResponseData();
        Group g = groups.get(req.groupId());
        Member m = g == null ? null : g.members.get(req.memberId());
        if (m == null) return r.setErrorCode(Errors.UNKNOWN_MEMBER_ID.code());
        if (req.generationId() != g.generation) return r.setErrorCode(Errors.ILLEGAL_GENERATION.code());
        if (g.state == State.PREPARING_REBALANCE) return r.setErrorCode(Errors.REBALANCE_IN_PROGRESS.code());
        m.lastSeen = System.currentTimeMillis();
        int generation = g.generation;
        if (g.state == State.COMPLETING_REBALANCE && m.id.equals(g.leader)) {
            for (SyncGroupRequestData.SyncGroupRequestAssignment a : req.assignments()) {
                Member x = g.members.get(a.memberId());
                if (x != null) x.assignment = a.assignment();
            }
            g.state = State.STABLE;
            notifyAll();
        }
        while (g.state == State.COMPLETING_REBALANCE && g.generation == generation && g.members.get(m.id) == m) wait(500);
        if (g.members.get(m.id) != m) return r.setErrorCode(Errors.UNKNOWN_MEMBER_ID.code());
        if (g.generation != generation || g.state != State.STABLE) return r.setErrorCode(Errors.REBALANCE_IN_PROGRESS.code());
        return r.setProtocolType(g.protocolType).setProtocolName(g.protocol).setAssignment(m.assignment);
    }

    synchronized HeartbeatResponseData heartbeat(HeartbeatRequestData req) {
        HeartbeatResponseData r = new HeartbeatResponseData();
        Group g = groups.get(req.groupId());
        Member m = g == null ? null : g.members.get(req.memberId());
        if (m == null) return r.setErrorCode(Errors.UNKNOWN_MEMBER_ID.code());
        m.lastSeen = System.currentTimeMillis();
        if (g.state == State.PREPARING_REBALANCE) return r.setErrorCode(Errors.REBALANCE_IN_PROGRESS.code());
        if (req.generationId() != g.generation) return r.setErrorCode(Errors.ILLEGAL_GENERATION.code());
        return r;
    }

    synchronized LeaveGroupResponseData leaveGroup(LeaveGroupRequestData req, short v) {
        LeaveGroupResponseData r = new LeaveGroupResponseData();
        Group g = group(req.groupId());
        List<String> ids = new ArrayList<>();
        if (v >= 3) req.members().forEach(x -> ids.add(x.memberId()));
        else ids.add(req.memberId());
        for (String id : ids) {
            boolean known = g.members.remove(id) != null;
            if (v >= 3) {
                r.members().add(new LeaveGroupResponseData.MemberResponse().setMemberId(id)
                        .setErrorCode(known ? 0 : Errors.UNKNOWN_MEMBER_ID.code()));
            } else if (!known) {
                r.setErrorCode(Errors.UNKNOWN_MEMBER_ID.code());
            }
            if (known) membersChanged(g, "member " + id + " left");
        }
        return r;
    }

    void membersChanged(Group g, String reason) {
        if (g.state == State.STABLE || g.state == State.COMPLETING_REBALANCE) prepareRebalance(g, reason);
        maybeCompleteJoin(g);
        notifyAll();
    }

    /** Expires members whose session timed out and rebalances that ran past their deadline. */
    void reapLoop() {
        while (true) {
            try {
                Thread.sleep(200);
            } catch (InterruptedException e) {
                return;
            }
            synchronized (this) {
                long now = System.currentTimeMillis();
                for (Group g : groups.values()) {
                    maybeCompleteJoin(g);
                    for (Member m : new ArrayList<>(g.members.values())) {
                        boolean rebalanceExpired = g.state == State.PREPARING_REBALANCE && now >= g.rebalanceDeadline;
                        boolean sessionExpired = now - m.lastSeen > m.sessionTimeoutMs;
                        if (!m.joined && (sessionExpired || rebalanceExpired)) {
                            g.members.remove(m.id);
                            membersChanged(g, "member " + m.id + (sessionExpired ? " session expired" : " did not rejoin in time"));
                        }
                    }
                }
            }
        }
    }

    synchronized OffsetCommitResponseData offsetCommit(OffsetCommitRequestData req) {
        OffsetCommitResponseData r = new OffsetCommitResponseData();
        Group g = group(req.groupId());
        for (OffsetCommitRequestData.OffsetCommitRequestTopic t : req.topics()) {
            OffsetCommitResponseData.OffsetCommitResponseTopic rt = new OffsetCommitResponseData.OffsetCommitResponseTopic().setName(t.name());
            for (OffsetCommitRequestData.OffsetCommitRequestPartition p : t.partitions()) {
                g.offsets.computeIfAbsent(t.name(), k -> new HashMap<>()).put(p.partitionIndex(), p);
                rt.partitions().add(new OffsetCommitResponseData.OffsetCommitResponsePartition().setPartitionIndex(p.partitionIndex()));
            }
            r.topics().add(rt);
        }
        return r;
    }

    synchronized OffsetFetchResponseData offsetFetch(OffsetFetchRequestData req) {
        OffsetFetchResponseData r = new OffsetFetchResponseData();
        Group g = group(req.groupId());
        Map<String, List<Integer>> wanted = new TreeMap<>();
        if (req.topics() == null) {
            g.offsets.forEach((topic, parts) -> wanted.put(topic, new ArrayList<>(parts.keySet())));
        } else {
            req.topics().forEach(t -> wanted.put(t.name(), t.partitionIndexes()));
        }
        wanted.forEach((topic, parts) -> {
            OffsetFetchResponseData.OffsetFetchResponseTopic rt = new OffsetFetchResponseData.OffsetFetchResponseTopic().setName(topic);
            for (int index : parts) {
                OffsetCommitRequestData.OffsetCommitRequestPartition c = g.offsets.getOrDefault(topic, Map.of()).get(index);
                rt.partitions().add(new OffsetFetchResponseData.OffsetFetchResponsePartition().setPartitionIndex(index)
                        .setCommittedOffset(c == null ? -1 : c.committedOffset())
                        .setCommittedLeaderEpoch(c == null ? -1 : c.committedLeaderEpoch())
                        .setMetadata(c == null ? "" : c.committedMetadata()));
            }
            r.topics().add(rt);
        });
        return r;
    }
}
