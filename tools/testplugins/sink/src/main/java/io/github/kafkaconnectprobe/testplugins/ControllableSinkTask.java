package io.github.kafkaconnectprobe.testplugins;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collection;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.AbstractConfig;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTask;

/** See {@link ControllableSinkConnector}. Counts what it consumed; stores nothing. */
public class ControllableSinkTask extends SinkTask {
  // Block files of tasks started before in this worker (unblock.on.restart).
  private static final Set<String> STARTED = ConcurrentHashMap.newKeySet();
  private Path blockFile;
  private boolean commit = true;
  private long putDelayMs;
  private volatile boolean stopping;
  private long consumed;

  @Override
  public void start(Map<String, String> props) {
    AbstractConfig config = new AbstractConfig(ControllableSinkConnector.CONFIG, props);
    String file = config.getString(ControllableSinkConnector.BLOCK_FILE);
    blockFile = file.isEmpty() ? null : Path.of(file);
    commit = config.getBoolean(ControllableSinkConnector.COMMIT);
    putDelayMs = config.getLong(ControllableSinkConnector.PUT_DELAY_MS);
    stopping = false;
    if (blockFile != null
        && !STARTED.add(file)
        && config.getBoolean(ControllableSinkConnector.UNBLOCK_ON_RESTART)) {
      try {
        Files.deleteIfExists(blockFile);
      } catch (java.io.IOException e) {
        throw new org.apache.kafka.connect.errors.ConnectException(e);
      }
    }
  }

  @Override
  public void put(Collection<SinkRecord> records) {
    while (blockFile != null && Files.exists(blockFile) && !stopping) {
      pause(100);
    }
    if (!records.isEmpty() && putDelayMs > 0) {
      pause(putDelayMs);
    }
    consumed += records.size();
  }

  @Override
  public Map<TopicPartition, OffsetAndMetadata> preCommit(
      Map<TopicPartition, OffsetAndMetadata> currentOffsets) {
    return commit ? currentOffsets : Map.of();
  }

  @Override
  public void stop() {
    stopping = true; // lets a blocked put() return so the task can be restarted
  }

  @Override
  public String version() {
    return "1.0.0";
  }

  long consumed() {
    return consumed;
  }

  private static void pause(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
