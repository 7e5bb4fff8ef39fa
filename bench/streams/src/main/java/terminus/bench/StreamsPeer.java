package terminus.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.List;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * The Kafka Streams peer of Terminus in docs/performance.md: per customer, read
 * the event (JSON), drop it if its eventId is among the customer's recent ones,
 * update the customer's record in a persistent (RocksDB) key-value store and
 * emit one JSON output carrying causationId = the input eventId. Exactly once
 * (exactly_once_v2), one stream thread, commit interval 100 ms (the EOS default,
 * and Terminus's).
 *
 * <p>Usage: StreamsPeer BOOTSTRAP APPLICATION_ID STATE_DIR OUTPUT_TOPIC INPUT_TOPIC...
 * Prints "first-record-ms N" (wall clock, ms) when it handles its first record.
 * Stops on SIGTERM.
 */
public final class StreamsPeer {
  static final String STORE = "customers";
  /** Recent event ids kept per customer, as Terminus's --dedup-window default. */
  static final int DEDUP_WINDOW = 32;

  static final ObjectMapper JSON = new ObjectMapper();
  static final AtomicBoolean FIRST = new AtomicBoolean(true);

  public static void main(String[] args) throws Exception {
    if (args.length < 5) {
      System.err.println(
          "usage: StreamsPeer BOOTSTRAP APPLICATION_ID STATE_DIR OUTPUT_TOPIC INPUT_TOPIC...");
      System.exit(2);
    }
    String output = args[3];
    List<String> inputs = List.of(args).subList(4, args.length);

    Properties props = new Properties();
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[1]);
    props.put(StreamsConfig.STATE_DIR_CONFIG, args[2]);
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, System.getProperty("threads", "1"));
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
    props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
    props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
    props.put(StreamsConfig.producerPrefix("linger.ms"), 5);
    props.put(StreamsConfig.producerPrefix("compression.type"), "lz4");

    StreamsBuilder builder = new StreamsBuilder();
    builder.addStateStore(
        Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore(STORE), Serdes.String(), Serdes.String()));
    builder.stream(inputs, Consumed.with(Serdes.String(), Serdes.String()))
        .process(CustomerProcessor::new, STORE)
        .to(output, Produced.with(Serdes.String(), Serdes.String()));

    KafkaStreams streams = new KafkaStreams(builder.build(), props);
    CountDownLatch done = new CountDownLatch(1);
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  streams.close();
                  done.countDown();
                }));
    streams.setUncaughtExceptionHandler(
        e -> {
          e.printStackTrace();
          return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
              .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
    streams.start();
    done.await();
  }

  /** Read, dedup, update the stored record, emit. */
  static final class CustomerProcessor implements Processor<String, String, String, String> {
    private ProcessorContext<String, String> context;
    private KeyValueStore<String, String> store;

    @Override
    public void init(ProcessorContext<String, String> context) {
      this.context = context;
      this.store = context.getStateStore(STORE);
    }

    @Override
    public void process(Record<String, String> record) {
      if (FIRST.compareAndSet(true, false)) {
        System.out.println("first-record-ms " + System.currentTimeMillis());
        System.out.flush();
      }
      JsonNode event;
      try {
        event = JSON.readTree(record.value());
      } catch (Exception e) {
        return; // the bench input is valid JSON; a real app would dead-letter it
      }
      String eventId = event.path("eventId").asText();
      String eventType = event.path("eventType").asText();
      try {
        String stored = store.get(record.key());
        ObjectNode state =
            stored == null ? JSON.createObjectNode() : (ObjectNode) JSON.readTree(stored);
        ArrayNode seen = state.withArray("seen");
        for (JsonNode id : seen) {
          if (id.asText().equals(eventId)) {
            return; // a duplicate changes nothing and emits nothing
          }
        }
        seen.add(eventId);
        while (seen.size() > DEDUP_WINDOW) {
          seen.remove(0);
        }
        state.put("events", state.path("events").asLong() + 1);
        state.put("lastEventType", eventType);
        state.put("clock", event.path("eventTime").asText());
        store.put(record.key(), JSON.writeValueAsString(state));

        ObjectNode out = JSON.createObjectNode();
        out.put("eventId", UUID.nameUUIDFromBytes(("out:" + eventId).getBytes()).toString());
        out.put("eventType", "CustomerRecordUpdated");
        out.put("eventTime", event.path("eventTime").asText());
        out.put("causationId", eventId);
        out.set("correlationId", event.path("correlationId"));
        out.put("source", "streams-peer");
        ObjectNode body = out.putObject("event");
        body.put("customerId", record.key());
        body.put("inputType", eventType);
        body.put("events", state.path("events").asLong());
        context.forward(record.withValue(JSON.writeValueAsString(out)));
      } catch (Exception e) {
        throw new RuntimeException(e);
      }
    }
  }
}
