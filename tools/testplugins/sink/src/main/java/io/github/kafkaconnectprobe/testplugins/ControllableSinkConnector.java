package io.github.kafkaconnectprobe.testplugins;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.sink.SinkConnector;

/**
 * A sink that writes nowhere and can be made to misbehave, for the sidecar's progress checks.
 *
 * <ul>
 *   <li>{@code block.file}: while a file of this name exists, {@code put()} does not return
 *       (a sink stuck on its downstream system). Its consumer then leaves the group after
 *       {@code max.poll.interval.ms} while Connect still reports the task RUNNING.
 *   <li>{@code commit=false}: {@code preCommit()} returns no offsets, so nothing is ever
 *       committed (a sink that is stuck although it keeps polling).
 *   <li>{@code put.delay.ms}: sleep this long per non-empty batch (a slow sink).
 *   <li>{@code unblock.on.restart=true}: the second start of a task with this block file in this
 *       worker deletes the file (a restart cures it; the blocked first instance returns too).
 * </ul>
 */
public class ControllableSinkConnector extends SinkConnector {
  public static final String BLOCK_FILE = "block.file";
  public static final String COMMIT = "commit";
  public static final String PUT_DELAY_MS = "put.delay.ms";
  public static final String UNBLOCK_ON_RESTART = "unblock.on.restart";

  static final ConfigDef CONFIG =
      new ConfigDef()
          .define(BLOCK_FILE, ConfigDef.Type.STRING, "", ConfigDef.Importance.LOW,
              "put() blocks while this file exists (empty: never)")
          .define(COMMIT, ConfigDef.Type.BOOLEAN, true, ConfigDef.Importance.LOW,
              "false: preCommit() returns no offsets, so nothing is ever committed")
          .define(PUT_DELAY_MS, ConfigDef.Type.LONG, 0L, ConfigDef.Importance.LOW,
              "sleep per non-empty batch, milliseconds")
          .define(UNBLOCK_ON_RESTART, ConfigDef.Type.BOOLEAN, false, ConfigDef.Importance.LOW,
              "true: a task started again (a restart) deletes block.file, as if a restart cured "
                  + "the downstream system");

  private Map<String, String> props = new HashMap<>();

  @Override
  public void start(Map<String, String> props) {
    CONFIG.parse(props); // fail fast on a bad value
    this.props = new HashMap<>(props);
  }

  @Override
  public Class<? extends Task> taskClass() {
    return ControllableSinkTask.class;
  }

  @Override
  public List<Map<String, String>> taskConfigs(int maxTasks) {
    List<Map<String, String>> configs = new ArrayList<>();
    for (int i = 0; i < maxTasks; i++) {
      configs.add(new HashMap<>(props));
    }
    return configs;
  }

  @Override
  public void stop() {}

  @Override
  public ConfigDef config() {
    return CONFIG;
  }

  @Override
  public String version() {
    return "1.0.0";
  }
}
