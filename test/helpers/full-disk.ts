/** A state store whose disk fills up on demand, for the tests of changes kept unsaved. */
import { FileStore } from '../../src/cutover/store-file.js';
import { StateWriteError } from '../../src/errors.js';

/** The file store with its state file's writes failing while `full` (its rescue file is written as usual). */
export class FullDiskStore extends FileStore {
  full = false;
  protected override async persist(next: Parameters<FileStore['persist']>[0]): Promise<void> {
    if (this.full) throw new StateWriteError(`the state file ${this.path} could not be written (ENOSPC)`);
    return super.persist(next);
  }
}
